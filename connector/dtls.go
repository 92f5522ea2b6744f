package connector

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/parley-dev/parley/rules"
)

// DTLS before the cookie (docs/hardening.md). The DTLS library keeps a connection per
// source address from its first ClientHello: it answers with a HelloVerifyRequest cookie and
// waits for the ClientHello that returns it, which a spoofed source never sends. Its state
// machine cannot be fed a ClientHello whose cookie someone else checked (the handshake's
// message sequence and transcript start at the library's own HelloVerifyRequest), so
// instead of a stateless front, the connector bounds that state: a handshake counts against
// maxConcurrentConnections from its first datagram; at the cap, the oldest handshake whose
// source has not returned the cookie yet is evicted for the newest, so that a flood of
// spoofed hellos cannot keep a real client's hello out; its source must return the cookie
// within Options.DTLSCookieTimeout (a second: one round trip for a real client); and a
// handshake given up for either is not an Error activity but a count, summarised
// (refusals.go) as a spoofed flood would be.
//
// Under the library, the connector reads the UDP socket itself (dtlsDemux) rather than
// through the library's demultiplexer, so that it can see each source's handshake go past
// the cookie, pick the oldest unverified one, count the hellos it drops, and bound the
// bytes buffered for each source.

// DTLSCookieTimeout is how long a DTLS source has to return the HelloVerifyRequest cookie
// unless Options.DTLSCookieTimeout says otherwise; the whole handshake is still bounded by
// TLS.HandshakeTimeout.
const DTLSCookieTimeout = time.Second

// dtlsBacklog bounds the sources that sent a ClientHello and are not accepted yet; beyond
// it, the oldest of them is dropped for the newest (counted and summarised).
const dtlsBacklog = 128

// Bytes of datagrams buffered for one source until its handshake or conversation reads
// them: before the cookie, a ClientHello and its retransmissions; after it, as much as a
// kernel's socket buffer of a small socket, so that a verified peer that sends faster than
// its conversation reads costs at most this much. Beyond them, datagrams are dropped
// (counted and summarised), as the kernel drops them from a full socket buffer.
const (
	dtlsUnverifiedBuffer = 16 << 10
	dtlsPeerBuffer       = 256 << 10
)

// dtlsReadSize is the largest datagram read whole: the DTLS library reads records into
// buffers of this size, so a larger datagram could not be read whole by it anyway.
const dtlsReadSize = 8192

// errUnverified says a DTLS handshake was given up because its source never returned the
// cookie; errEvicted, because a newer hello took its place at maxConcurrentConnections
// before its source returned the cookie.
var (
	errUnverified = errors.New("DTLS cookie not returned")
	errEvicted    = errors.New("DTLS handshake evicted for a newer hello before its cookie came back")
)

// listenDTLS listens for DTLS: the library makes each source a connection, so each
// conversation reads its own socket as over TCP, one datagram per read.
func (c *Connector) listenDTLS(p *rules.Program) (net.Listener, error) {
	pc, err := c.listenUDP(p) // with a plain UDP server's receive buffer: a flood of hellos is as bursty
	if err != nil {
		return nil, err
	}
	transport, prefixV6 := p.Transport, p.PeerPrefixV6
	d := newDTLSDemux(pc, func(reason refusalReason, peer netip.AddrPort) {
		c.refuse(reason, peer, transport, prefixV6)
	}, func(n uint64) { c.refuseUnseen(n, transport) })
	ln, err := dtls.NewListenerWithOptions(d, c.opts.TLS.dtlsServerOptions(p)...)
	if err != nil {
		_ = d.Close()
		network, address := c.address(p)
		return nil, fmt.Errorf("listen on %s/%s: %w", network, address, err)
	}
	return &dtlsListener{Listener: ln, demux: d, cookieTimeout: c.opts.DTLSCookieTimeout}, nil
}

// isClientHello says a datagram opens with a DTLS handshake record (content type 22) of
// epoch 0 holding a ClientHello (handshake type 1): only those create a connection.
func isClientHello(b []byte) bool {
	return len(b) > 13 && b[0] == 22 && b[3] == 0 && b[4] == 0 && b[13] == 1
}

// isServerHello says a datagram the server sends opens with a ServerHello (handshake type
// 2), which the library sends only once the cookie came back.
func isServerHello(b []byte) bool {
	return len(b) > 13 && b[0] == 22 && b[3] == 0 && b[4] == 0 && b[13] == 2
}

// dtlsDemux reads a DTLS listener's UDP socket on a goroutine of its own and hands each
// source's datagrams to that source's helloSocket, which the DTLS library reads as its
// connection. A datagram from a new source makes a socket only if it opens with a
// ClientHello. It is the library's listener (a dtlsnet.PacketListener): closing it stops
// new sources; the UDP socket closes when the listener and every socket it made are closed,
// since their conversations write on it until then, and the read goroutine returns then.
type dtlsDemux struct {
	pc *net.UDPConn
	// dropped is told of each hello dropped from a full backlog and of each datagram
	// dropped from a full buffer; called without mu, from the read goroutine.
	dropped func(refusalReason, netip.AddrPort)
	// overflowed is told of datagrams the kernel dropped from the socket's full receive
	// buffer, whose sources nobody saw; called from the read goroutine.
	overflowed func(n uint64)

	backlog chan *helloSocket // sources not accepted yet
	done    chan struct{}     // closed by Close
	readErr error             // why reading stopped; set before readDone closes
	// readDone is closed when the read goroutine has returned.
	readDone chan struct{}

	mu     sync.Mutex // guards the fields below
	socks  map[netip.AddrPort]*helloSocket
	closed bool
	// unverified lists the sockets handed to the connector whose handshake has not gone
	// past the cookie, oldest first: the candidates for eviction.
	unverified list.List
	pcClosed   bool
}

func newDTLSDemux(pc *net.UDPConn, dropped func(refusalReason, netip.AddrPort), overflowed func(uint64)) *dtlsDemux {
	d := &dtlsDemux{
		pc: pc, dropped: dropped, overflowed: overflowed, backlog: make(chan *helloSocket, dtlsBacklog),
		done: make(chan struct{}), readDone: make(chan struct{}), socks: map[netip.AddrPort]*helloSocket{},
	}
	go d.read()
	return d
}

// read dispatches datagrams until the UDP socket fails or closes.
func (d *dtlsDemux) read() {
	defer close(d.readDone)
	buf := make([]byte, dtlsReadSize)
	oob := make([]byte, overflowOOB)
	overflow := newSocketOverflow(d.pc)
	for {
		n, oobn, _, from, err := d.pc.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			d.readErr = err
			return
		}
		if k := overflow.dropped(oob[:oobn]); k > 0 {
			d.overflowed(k)
		}
		from = unmap(from)
		if reason, ok := d.dispatch(from, buf[:n]); !ok {
			d.dropped(reason, from)
		}
	}
}

// dispatch queues a datagram on its source's socket, making one for a ClientHello from a
// new source; false with the reason if something was dropped for it.
func (d *dtlsDemux) dispatch(from netip.AddrPort, b []byte) (refusalReason, bool) {
	d.mu.Lock()
	s := d.socks[from]
	if s == nil {
		if d.closed || !isClientHello(b) {
			d.mu.Unlock()
			return 0, true // not a hello: as the kernel would for a closed port, nothing
		}
		s = d.newSocket(from)
		var old *helloSocket
		select {
		case d.backlog <- s:
		default:
			// The backlog is full: its oldest source makes room for the newest, so that
			// a flood of spoofed hellos cannot keep a real client's hello out.
			select {
			case old = <-d.backlog:
				d.forget(old)
			default:
			}
			d.backlog <- s // only dispatch sends, under mu: there is room now
		}
		d.socks[from] = s
		d.mu.Unlock()
		if old != nil {
			old.queue.close()
			d.dropped(refusedBacklog, old.peer)
		}
	} else {
		d.mu.Unlock()
	}
	if err := s.queue.write(b); errors.Is(err, errQueueFull) {
		return refusedBufferFull, false
	}
	return 0, true
}

func (d *dtlsDemux) newSocket(peer netip.AddrPort) *helloSocket {
	return &helloSocket{demux: d, peer: peer, addr: net.UDPAddrFromAddrPort(peer), queue: newDatagramQueue(dtlsUnverifiedBuffer)}
}

// forget drops s from the demultiplexer's tables. Called with mu held.
func (d *dtlsDemux) forget(s *helloSocket) {
	if d.socks[s.peer] == s {
		delete(d.socks, s.peer)
	}
	if s.pending != nil {
		d.unverified.Remove(s.pending)
		s.pending = nil
	}
}

// Accept returns the next new source's socket, as the DTLS library asks its listener.
func (d *dtlsDemux) Accept() (net.PacketConn, net.Addr, error) {
	select {
	case s := <-d.backlog:
		return s, s.addr, nil
	case <-d.done:
		return nil, nil, net.ErrClosed
	case <-d.readDone:
		return nil, nil, fmt.Errorf("read DTLS datagrams: %w", d.readErr)
	}
}

// Close stops accepting new sources and drops those not accepted yet; the UDP socket
// stays open for the sockets accepted until the last of them closes.
func (d *dtlsDemux) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	close(d.done)
	var queued []*helloSocket
	for {
		select {
		case s := <-d.backlog:
			d.forget(s)
			queued = append(queued, s)
			continue
		default:
		}
		break
	}
	d.mu.Unlock()
	for _, s := range queued {
		s.queue.close()
	}
	return d.closeSocketIfUnused()
}

// closeSocketIfUnused closes the UDP socket once the listener and every socket it made are
// closed, and waits for the read goroutine to return.
func (d *dtlsDemux) closeSocketIfUnused() error {
	d.mu.Lock()
	if !d.closed || len(d.socks) > 0 || d.pcClosed {
		d.mu.Unlock()
		return nil
	}
	d.pcClosed = true
	d.mu.Unlock()
	err := d.pc.Close()
	<-d.readDone
	return err
}

func (d *dtlsDemux) Addr() net.Addr { return d.pc.LocalAddr() }

// handed notes that the connector took s: an unverified handshake from now on, which a
// newer hello may evict.
func (d *dtlsDemux) handed(s *helloSocket) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.socks[s.peer] == s && !s.verified.Load() && s.pending == nil {
		s.pending = d.unverified.PushBack(s)
	}
}

// evictOldest evicts the oldest handshake handed to the connector whose source has not
// returned the cookie, other than newest, and returns it (nil if there is none): its socket
// is closed, so its handshake fails with errEvicted.
func (d *dtlsDemux) evictOldest(newest *helloSocket) *helloSocket {
	d.mu.Lock()
	e := d.unverified.Front()
	if e != nil && e.Value.(*helloSocket) == newest {
		e = e.Next()
	}
	if e == nil {
		d.mu.Unlock()
		return nil
	}
	s := e.Value.(*helloSocket)
	s.evicted.Store(true)
	d.forget(s)
	d.mu.Unlock()
	s.queue.close()
	return s
}

// verify marks s past the cookie; false if it was evicted first.
func (d *dtlsDemux) verify(s *helloSocket) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s.evicted.Load() {
		return false
	}
	if s.pending != nil {
		d.unverified.Remove(s.pending)
		s.pending = nil
	}
	s.verified.Store(true)
	s.queue.setLimit(dtlsPeerBuffer)
	return true
}

// helloSocket is one source's socket under the DTLS library: the datagrams the demultiplexer
// queued for it, and writes to its address. verified is set once the server's handshake has
// gone past the cookie (it sends a ServerHello).
type helloSocket struct {
	demux *dtlsDemux
	peer  netip.AddrPort
	addr  *net.UDPAddr
	queue *datagramQueue

	verified, evicted atomic.Bool
	closeOnce         sync.Once
	// pending is s's place in the demultiplexer's unverified list; guarded by its mu.
	pending *list.Element
	// owner is the connection the connector tracks for s (its key in Connector.sockets),
	// set by the accept loop before s is handed.
	owner *dtlsServerConn
}

func (s *helloSocket) ReadFrom(b []byte) (int, net.Addr, error) {
	n, err := s.queue.read(b)
	return n, s.addr, err
}

func (s *helloSocket) WriteTo(b []byte, _ net.Addr) (int, error) {
	if !s.verified.Load() && isServerHello(b) && !s.demux.verify(s) {
		return 0, net.ErrClosed
	}
	return s.demux.pc.WriteToUDPAddrPort(b, s.peer)
}

// Close forgets the source (a new hello from it makes a new socket) and, if the listener
// is closed and this was its last socket, closes the UDP socket.
func (s *helloSocket) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.demux.mu.Lock()
		s.demux.forget(s)
		s.demux.mu.Unlock()
		s.queue.close()
		err = s.demux.closeSocketIfUnused()
	})
	return err
}

func (s *helloSocket) LocalAddr() net.Addr { return s.demux.pc.LocalAddr() }

func (s *helloSocket) SetDeadline(t time.Time) error { return s.SetReadDeadline(t) }

func (s *helloSocket) SetReadDeadline(t time.Time) error {
	s.queue.setReadDeadline(t)
	return nil
}

// SetWriteDeadline does nothing: a datagram write does not wait for the peer, and the UDP
// socket's own deadline is every source's.
func (s *helloSocket) SetWriteDeadline(time.Time) error { return nil }

var _ net.PacketConn = (*helloSocket)(nil)

// dtlsListener is the DTLS library's listener, its connections paired with the socket
// under each.
type dtlsListener struct {
	net.Listener
	demux         *dtlsDemux
	cookieTimeout time.Duration
}

func (l *dtlsListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return conn, err
	}
	dc, ok := conn.(*dtls.Conn)
	if !ok {
		return conn, nil
	}
	sc := &dtlsServerConn{Conn: dc, cookieTimeout: l.cookieTimeout}
	l.demux.mu.Lock()
	if s := l.demux.socks[unmap(addrPortOf(conn.RemoteAddr()))]; s != nil {
		s.owner, sc.hello = sc, s
	}
	l.demux.mu.Unlock()
	if sc.hello != nil {
		l.demux.handed(sc.hello)
	}
	return sc, nil
}

// dtlsServerConn is an accepted DTLS connection before its handshake.
type dtlsServerConn struct {
	*dtls.Conn
	hello         *helloSocket // nil if the listener lost track of it: then no cookie deadline
	cookieTimeout time.Duration
}

// evictUnverified makes room at maxConcurrentConnections for the DTLS hello s, if it is
// one, by evicting the oldest handshake whose source has not returned the cookie: true if
// a handshake's place was freed. Called with mu held.
func (c *Connector) evictUnverified(s any) bool {
	sc, ok := s.(*dtlsServerConn)
	if !ok || sc.hello == nil {
		return false
	}
	for {
		victim := sc.hello.demux.evictOldest(sc.hello)
		if victim == nil {
			return false
		}
		if victim.owner == nil {
			continue
		}
		// Its handshake ends by itself (errEvicted) and is counted then; its place is
		// given back now, for s to take.
		if st, ok := c.sockets[victim.owner]; ok && st.handshake {
			st.handshake = false
			c.handshakes--
			c.sockets[victim.owner] = st
			return true
		}
	}
}

// handshake runs the server handshake within ctx, giving up at its cookie deadline if the
// source has not returned the cookie by then (errUnverified), or as soon as a newer hello
// evicted it (errEvicted).
func (sc *dtlsServerConn) handshake(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if sc.hello != nil {
		t := time.AfterFunc(sc.cookieTimeout, func() {
			if !sc.hello.verified.Load() {
				cancel(errUnverified)
			}
		})
		defer t.Stop()
	}
	err := sc.HandshakeContext(ctx)
	switch {
	case err == nil:
		return nil
	case sc.hello != nil && sc.hello.evicted.Load():
		return errEvicted
	case sc.hello != nil && !sc.hello.verified.Load():
		// Given up before its source proved its address (its cookie deadline, or the
		// connector stopping): nothing to tell of it but a count.
		return errUnverified
	}
	return err
}
