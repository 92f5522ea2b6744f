package connector

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// readiness waits until a socket has bytes to read, or an end or error to report
// (readbuf.go).
type readiness struct {
	rc syscall.RawConn
	// ready is rc.Read's callback, made once. rc.Read calls it, and again each time the
	// socket may have become readable. The first call asks poll(2) without waiting: bytes
	// may have come since the last read, and their wake-up was cleared as rc.Read began.
	// poll takes nothing from the socket, neither bytes nor a reset, which the read that
	// follows must see and report as it always did. After a wake-up the read goes ahead
	// (a spurious one only means the read waits, holding its buffer).
	ready func(fd uintptr) bool
	woken bool
	pfd   [1]unix.PollFd
}

// newReadiness returns a waiter for conn, or nil when conn is not a plain TCP connection.
func newReadiness(conn net.Conn) *readiness {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &readiness{rc: rc}
	w.ready = func(fd uintptr) bool {
		if w.woken {
			return true
		}
		w.woken = true
		w.pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}
		n, err := unix.Poll(w.pfd[:], 0)
		return err != nil || n > 0 // an error: let the read find out
	}
	return w
}

// wait returns once a read would not block. Its error is not reported: the read that
// follows reports the socket's state.
func (w *readiness) wait() {
	w.woken = false
	_ = w.rc.Read(w.ready)
}
