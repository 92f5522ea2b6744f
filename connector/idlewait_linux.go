package connector

import (
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// idleWaiter holds accepted plain TCP connections from their greeting to their first input
// without a goroutine each (docs/performance.md §1). A goroutine blocked in a read costs at
// least its 2 KiB stack and its g, more than everything else an idle connection holds; a
// connection that is greeted and then says nothing (a scanner, a client that holds its
// connection for later, a peer that holds slots) needs neither. The waiter registers each
// parked connection in an epoll instance of its own, which Go's netpoller watches like any
// socket, and one goroutine per connector starts a connection's reader (readLoop, as
// before) once the connection is readable: bytes, the peer's end, or an error. Once started,
// a reader reads on as before, between inputs too.
//
// A parked connection is woken, and its reader started to find the socket closed, whoever
// closes it: streamSocket.close (an ending, a rule, Shutdown's endings), and Close, which
// closes every socket and then wakes every parked one (stop). A socket's close takes it out
// of the epoll instance by itself.
type idleWaiter struct {
	c *Connector

	mu sync.Mutex // guards the fields below
	// ep is the epoll instance, made with the first parked connection; epfd is its
	// descriptor, used under mu while the file is open.
	ep     *os.File
	epfd   int
	closed bool // stop has run: nothing is parked from now on
	next   uint64
	parked map[uint64]parkedConn
}

// parkedConn is a connection waiting for its first input, and its conversation.
type parkedConn struct {
	cv *conversation
	s  *streamSocket
}

// park hands s, whose conversation cv has started, to the waiter; false when it cannot (not
// a plain TCP connection, the connector stopping, no epoll instance): the caller starts
// its reader itself.
func (w *idleWaiter) park(cv *conversation, s *streamSocket) bool {
	if !w.parkable(cv, s) {
		return false
	}
	rc, err := s.conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || (w.ep == nil && !w.startLocked()) {
		return false
	}
	w.next++
	token := w.next
	w.parked[token] = parkedConn{cv, s}
	s.idleToken = token
	s.idle.Store(w)
	// One-shot: the first readiness wakes the connection and disarms it; a closed socket
	// leaves the instance. The disarmed registration stays until then (one epoll watch of
	// the user's fs.epoll.max_user_watches beside the netpoller's, a few hundred bytes of
	// kernel memory): removing it at the wake would cost every connection a syscall. Control holds the descriptor: it cannot be closed and reused
	// meanwhile. epfd stays open while mu is held (stop closes it after setting closed).
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(uint32(token)), Pad: int32(uint32(token >> 32))}
	var cerr error
	err = rc.Control(func(fd uintptr) { cerr = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev) })
	if err == nil && cerr == nil {
		return true
	}
	// Closed meanwhile, or refused: the caller's reader finds out which, unless a close
	// has taken the connection from the waiter already and started its reader.
	if _, ok := w.parked[token]; !ok {
		return true
	}
	delete(w.parked, token)
	s.idle.Store(nil)
	return false
}

// parkable says whether s, whose conversation is cv, is a connection the waiter can hold: a
// plain TCP connection whose reader holds no state between reads.
func (w *idleWaiter) parkable(cv *conversation, s *streamSocket) bool {
	_, tcp := s.conn.(*net.TCPConn)
	return tcp && !s.datagrams && cv.prog.Expr == nil && framingOf(cv.prog) == nil // the others hold state from the start (readbuf.go)
}

// startLocked makes the epoll instance and starts the goroutine that watches it; false when
// it cannot (the connector's goroutines are closed, or the system refuses). Called with mu
// held.
func (w *idleWaiter) startLocked() bool {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return false
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return false
	}
	// Non-blocking, so os.NewFile gives it to Go's netpoller: an epoll instance is readable
	// while it has events ready.
	ep := os.NewFile(uintptr(fd), "parley-idle-epoll")
	// os.NewFile gives up on the netpoller silently (out of epoll watches, say); reads
	// would then fail at their first wait and strand what is parked. Only a file the
	// netpoller watches takes deadlines.
	if err := ep.SetReadDeadline(time.Time{}); err != nil {
		_ = ep.Close()
		return false
	}
	rc, err := ep.SyscallConn()
	if err != nil {
		_ = ep.Close()
		return false
	}
	if !w.c.tasks.goFunc(func() { w.run(rc) }) {
		_ = ep.Close()
		return false
	}
	w.ep, w.epfd, w.parked = ep, fd, map[uint64]parkedConn{}
	return true
}

// run wakes the connections the epoll instance reports ready, until stop closes it. Should
// it end otherwise (an error of epoll_wait), it stops the waiter as stop does: every parked
// connection gets its reader, and none is parked from then on.
func (w *idleWaiter) run(rc syscall.RawConn) {
	defer w.stop()
	events := make([]unix.EpollEvent, 64)
	for {
		n := 0
		var werr error
		err := rc.Read(func(fd uintptr) bool {
			for {
				n, werr = unix.EpollWait(int(fd), events, 0)
				if werr != unix.EINTR {
					break
				}
			}
			return n > 0 || werr != nil // nothing ready: wait for the instance to be readable
		})
		if err != nil || werr != nil {
			return // closed by stop
		}
		for _, ev := range events[:n] {
			w.wake(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32)
		}
	}
}

// wake starts the reader of the connection parked under token, if it is still parked.
func (w *idleWaiter) wake(token uint64) {
	w.mu.Lock()
	p, ok := w.parked[token]
	if ok {
		delete(w.parked, token)
		if len(w.parked) == 0 {
			// A map never shrinks: after a burst of parked connections, let its buckets go.
			w.parked = map[uint64]parkedConn{}
		}
	}
	w.mu.Unlock()
	if ok {
		p.s.idle.Store(nil)
		w.c.resume(p.cv, p.s)
	}
}

// unpark wakes s if it is parked: its socket has just been closed.
func (w *idleWaiter) unpark(s *streamSocket) {
	w.mu.Lock()
	token := s.idleToken
	w.mu.Unlock()
	w.wake(token)
}

// stop wakes every parked connection (Close has closed their sockets, or Shutdown has ended
// their conversations) and closes the epoll instance, which ends run. Nothing is parked
// afterwards.
func (w *idleWaiter) stop() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	parked := w.parked
	w.parked = nil
	if w.ep != nil {
		_ = w.ep.Close()
	}
	w.mu.Unlock()
	for _, p := range parked {
		p.s.idle.Store(nil)
		w.c.resume(p.cv, p.s)
	}
}
