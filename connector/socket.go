package connector

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

// maxDTLSRecord is the largest plaintext a DTLS record carries (2^14 bytes).
const maxDTLSRecord = 1 << 14

// socket is one way to reach the peer of a conversation.
type socket interface {
	// send writes buf; ends marks where each message ends (one datagram each on UDP).
	send(buf []byte, ends []int) (int, error)
	// close closes the socket on our side; the logical connection may live on.
	close()
	closedByUs() bool
	remote() netip.AddrPort
}

// streamSocket is a TCP connection, or a connected UDP socket in client mode. Every idle
// connection holds one: its fields are ordered so that it fits 112 bytes, not 128.
type streamSocket struct {
	conn net.Conn
	// raw is the transport's own socket under conn's TLS or DTLS, as the connector tracks it.
	raw          io.Closer
	peer         netip.AddrPort
	byUs         atomic.Bool
	datagrams    bool
	writeTimeout time.Duration
	detail       string // the TLS session of a client socket, for the Connected activity
	// framing is what the reader cuts inputs with (nil: the plain read loop), for
	// fillReplies; next is a framing a fired rule asks for, taken by the reader before the
	// next input (framed.go).
	framing atomic.Pointer[rules.Framing]
	next    atomic.Pointer[rules.Framing]
	// idle is the waiter holding the socket without a reader until its first input
	// (idlewait_linux.go), nil once its reader runs; idleToken is its key there, guarded by
	// the waiter's lock.
	idle      atomic.Pointer[idleWaiter]
	idleToken uint64
}

func (s *streamSocket) send(buf []byte, ends []int) (int, error) {
	if !s.datagrams {
		// A plain TCP socket's buffer usually takes the whole reply at once: only what it
		// does not take waits, under the deadline (writeNow).
		n, ok, err := writeNow(s.conn, buf)
		if ok && (err != nil || n == len(buf)) {
			return n, err
		}
		_ = s.conn.SetWriteDeadline(time.Now().Add(s.writeTimeout))
		m, err := s.conn.Write(buf[n:])
		if ok {
			// writeNow's next writes must not find this deadline passed.
			_ = s.conn.SetWriteDeadline(time.Time{})
		}
		return n + m, err
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	total, start := 0, 0
	for _, end := range ends {
		if end > start {
			n, err := s.conn.Write(buf[start:end])
			total += n
			if err != nil {
				return total, err
			}
		}
		start = end
	}
	return total, nil
}

func (s *streamSocket) close() {
	s.byUs.Store(true)
	_ = s.conn.Close()
	if w := s.idle.Load(); w != nil {
		w.unpark(s) // no reader waits on it: start one, to find the socket closed
	}
}

func (s *streamSocket) closedByUs() bool       { return s.byUs.Load() }
func (s *streamSocket) remote() netip.AddrPort { return s.peer }

// readLoop turns reads into inputs until the socket closes. With firstWait, its first read
// waits that long, and a connection silent until then goes to the idle waiter (serveStream):
// the loop returns unless the waiter cannot take it.
func (c *Connector) readLoop(cv *conversation, s *streamSocket, firstWait time.Duration) {
	if f := framingOf(cv.prog); f != nil {
		c.framedLoop(cv, newFrameReader(s, f))
		return
	}
	limit := cv.prog.MaxInputSize
	size := limit
	if s.datagrams {
		size++ // one more byte tells a datagram was cut
	}
	if _, ok := s.conn.(*dtls.Conn); ok {
		size = max(size, maxDTLSRecord+1) // a DTLS read must hold the whole record
	}
	var wait *readiness
	if cv.prog.Expr == nil {
		wait = newReadiness(s.conn) // readbuf.go: no buffer held while idle, read(2) into one borrowed
	}
	var buf []byte
	if wait == nil {
		buf = make([]byte, size)
	}
	if firstWait > 0 {
		_ = s.conn.SetReadDeadline(time.Now().Add(firstWait))
	}
	for {
		var lent *[]byte
		var n int
		var err error
		if wait != nil {
			if lent, n, err = wait.readInto(s.conn, size); lent != nil {
				buf = *lent
			}
		} else {
			n, err = s.conn.Read(buf)
		}
		if firstWait > 0 {
			firstWait = 0
			_ = s.conn.SetReadDeadline(time.Time{}) // the reader resumed by the waiter reads without one
			if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
				if c.idle.park(cv, s) {
					return
				}
				continue
			}
		}
		if n > 0 {
			truncated := n >= limit
			if s.datagrams {
				truncated = n > limit
				n = min(n, limit)
			}
			cv = cv.input(s, buf[:n], truncated)
		}
		if lent != nil {
			readBuffers.Put(lent)
		}
		if err != nil {
			_ = s.conn.Close()
			c.untrackSocket(s.raw)
			cv.socketClosed(s, err)
			return
		}
	}
}

// startReader runs readLoop on a goroutine of the connector; false (and nothing run) once
// the connector is stopping.
func (c *Connector) startReader(cv *conversation, s *streamSocket) bool {
	return c.tasks.goFunc(func() { c.readLoop(cv, s, 0) })
}

// resume starts the reader of a socket the idle waiter held. Once the connector's
// goroutines are closed, its conversation is ended or ending (Close, Shutdown): the socket
// is closed and forgotten, and the conversation, whose lock the caller may hold, is left to
// its end.
func (c *Connector) resume(cv *conversation, s *streamSocket) {
	if !c.startReader(cv, s) {
		_ = s.conn.Close()
		c.untrackSocket(s.raw)
	}
}

// newStreamSocket wraps conn, whose transport socket is raw (conn itself without TLS).
func (c *Connector) newStreamSocket(conn net.Conn, raw io.Closer, transport v1alpha1.Transport) *streamSocket {
	peer := addrPortOf(conn.RemoteAddr())
	return &streamSocket{
		conn: conn, raw: raw, peer: unmap(peer), datagrams: transport == v1alpha1.TransportUDP, writeTimeout: c.opts.WriteTimeout,
	}
}

// addrPortOf reads an address without going through its text where it can.
func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
