package connector

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// readiness reads a plain TCP socket without holding a buffer while it waits (readbuf.go).
// Every idle connection holds one, so it keeps no copy of the connection (64 bytes, not
// 72): readInto is given it.
type readiness struct {
	rc syscall.RawConn
	// read is rc.Read's callback, made once. rc.Read calls it, and again each time the
	// socket may have become readable: it borrows a buffer and reads into it; when nothing
	// is there (EAGAIN) it gives the buffer back and has rc.Read wait. A busy socket costs
	// one read(2) per input, as net.Conn.Read does, and an idle one holds no buffer.
	read func(fd uintptr) bool
	// size, lent, n and err are read's arguments and results.
	size int
	lent *[]byte
	n    int
	err  error
}

// newReadiness returns a reader for conn, or nil when conn is not a plain TCP connection.
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
	w.read = func(fd uintptr) bool {
		if w.lent == nil {
			w.lent = borrowReadBuffer(w.size)
		}
		for {
			w.n, w.err = unix.Read(int(fd), *w.lent)
			if w.err != unix.EINTR {
				break
			}
		}
		if w.err == unix.EAGAIN {
			readBuffers.Put(w.lent)
			w.lent = nil
			return false
		}
		return true
	}
	return w
}

// readInto borrows a buffer of size bytes once conn, the connection w was made for, is
// readable and reads into it. Its results are net.Conn.Read's: the bytes read (in the
// buffer, to give back with readBuffers.Put once used; nil only with an error and no bytes),
// io.EOF at the peer's end, and other errors as the *net.OpError a read of conn returns.
func (w *readiness) readInto(conn net.Conn, size int) (lent *[]byte, n int, err error) {
	w.size, w.lent, w.n, w.err = size, nil, 0, nil
	rerr := w.rc.Read(w.read)
	lent, n, err = w.lent, max(w.n, 0), w.err
	w.lent = nil
	switch {
	case rerr != nil: // closed, or a deadline: as net.Conn.Read reports them
		err = opError("read", conn, rerr)
	case err != nil:
		err = opError("read", conn, os.NewSyscallError("read", err))
	case n == 0:
		err = io.EOF
	}
	if n == 0 && lent != nil {
		readBuffers.Put(lent)
		lent = nil
	}
	return lent, n, err
}

// opError is err as net.Conn's Read or Write (op) reports it; an error of the RawConn's
// own (an *net.OpError saying "raw-read" or "raw-write") gives its cause. The network is
// named as conn's errors name it: the connector listens and dials tcp4 or tcp6 only
// (Connector.address), so the address family says which.
func opError(op string, conn net.Conn, err error) error {
	if raw, ok := errors.AsType[*net.OpError](err); ok {
		err = raw.Err
	}
	network := "tcp6"
	if a, ok := conn.LocalAddr().(*net.TCPAddr); ok && a.IP.To4() != nil {
		network = "tcp4"
	}
	return &net.OpError{Op: op, Net: network, Source: conn.LocalAddr(), Addr: conn.RemoteAddr(), Err: err}
}

// writeNow writes b to conn with write(2) calls that never wait for the socket to take
// more: n is what it took. ok is false, and nothing written, when conn is not a plain TCP
// connection. Its errors are those conn.Write returns.
//
// A reply is written under a deadline (Options.WriteTimeout), so that a peer that stops
// reading cannot hold its conversation; but setting one before every write moves a runtime
// timer each time, on the path of every round trip (docs/performance.md §1), for a bound
// that matters only when the socket's buffer is full. So a reply is first written this
// way, and only what the socket did not take is written under the deadline (send).
func writeNow(conn net.Conn, b []byte) (n int, ok bool, err error) {
	tc, plain := conn.(*net.TCPConn)
	if !plain {
		return 0, false, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	w := nowWriters.Get().(*nowWriter)
	w.b, w.n, w.err = b, 0, nil
	rerr := rc.Write(w.write)
	n, err = w.n, w.err
	w.b = nil
	nowWriters.Put(w)
	switch {
	case rerr != nil: // closed, or a deadline: as conn.Write reports them
		return n, true, opError("write", conn, rerr)
	case err == unix.EAGAIN:
		return n, true, nil // the socket's buffer is full: the rest waits, under a deadline
	case err != nil:
		return n, true, opError("write", conn, os.NewSyscallError("write", err))
	}
	return n, true, nil
}

// nowWriter is writeNow's callback and its results; pooled, with write bound once, so
// that a write allocates no closure.
type nowWriter struct {
	b     []byte
	n     int
	err   error
	write func(fd uintptr) bool
}

var nowWriters = sync.Pool{New: func() any {
	w := &nowWriter{}
	w.write = func(fd uintptr) bool {
		for w.n < len(w.b) {
			k, err := unix.Write(int(fd), w.b[w.n:])
			if err == unix.EINTR {
				continue
			}
			if k > 0 {
				w.n += k
			}
			if err != nil || k <= 0 {
				w.err = err
				break
			}
		}
		return true // never wait: the caller does, under a deadline
	}
	return w
}}
