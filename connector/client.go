package connector

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

// RunClients dials the conversations of client-mode rules (maxConcurrentConnections of
// them, to operation.ip and operation.port unless Options override them) once their
// executionDelay has passed, and returns when every one has ended: nil if any could connect,
// an error if none could. The connector has then stopped (ConnectorStopped is recorded).
// Shutdown and Close end the conversations as they do a server's; RunClients then returns
// ErrServerClosed, or the error saying that none could connect.
func (c *Connector) RunClients() error {
	if c.current.Load().prog.Mode != v1alpha1.ModeClient {
		return errors.New("connector: the rules are in server mode: use ListenAndServe, Serve or ServePacket")
	}
	if err := c.checkTLS(c.current.Load().prog); err != nil {
		return err
	}
	if !c.serving.add() {
		return ErrServerClosed
	}
	defer c.serving.done()
	if !c.sleep(c.current.Load().prog.ExecutionDelay) {
		return ErrServerClosed
	}
	g := c.current.Load()
	p := g.prog
	n := p.MaxConnections
	live := newCountdown(n)
	var connected atomic.Int64
	_, address := c.address(p)
	msg := fmt.Sprintf("dialing %s/%s, %d conversations", address, p.Transport, n)
	if p.StartWhen != nil {
		msg = fmt.Sprintf("waiting until operation.startWhen holds in shared memory space %s, then dialing %d conversations", p.Space, n)
	}
	if !c.started(p, nil, msg) {
		return ErrServerClosed
	}
	if p.StartWhen != nil {
		if !c.waitStart(p) {
			return ErrServerClosed // Shutdown or Close ended the wait, and record the stop
		}
		_, address = c.address(p)
	}
	for i := range n {
		if !c.tasks.goFunc(func() { c.runClientConversation(g, i, live, &connected) }) {
			live.done()
		}
	}
	select {
	case <-live.zero:
	case <-c.quit:
		<-live.zero // Shutdown or Close ends them
	}
	// Whoever stops the connector first says why: the conversations' own ends, or Shutdown
	// or Close.
	err := ErrServerClosed
	if c.beginStop("all conversations ended") {
		c.conns.drain()
		c.tasks.close()
		<-c.tasks.idle
		c.recordStopped()
		err = nil
	}
	if connected.Load() == 0 {
		return fmt.Errorf("no conversation could connect to %s/%s", address, p.Transport)
	}
	return err
}

// countdown closes zero when done has been called as many times as it was made with.
type countdown struct {
	n    atomic.Int64
	zero chan struct{}
}

func newCountdown(n int) *countdown {
	c := &countdown{zero: make(chan struct{})}
	c.n.Store(int64(n))
	if n <= 0 {
		close(c.zero)
	}
	return c
}

func (c *countdown) done() {
	if c.n.Add(-1) == 0 {
		close(c.zero)
	}
}

// runClientConversation dials conversation i and holds it; live counts it down once it has
// ended (or could not start).
func (c *Connector) runClientConversation(g *generation, i int, live *countdown, connected *atomic.Int64) {
	p := g.prog
	s, err := c.dial(p)
	if err != nil {
		c.record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityError, RulesRef: &p.Ref, Message: err.Error()})
		live.done()
		return
	}
	connected.Add(1)
	key := addrKey(netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}), 0))
	cv, res := c.conns.join(key, p.MaxConnections, netip.Prefix{}, 0, false, nil, func() *conversation { return c.newConversation(g, s.peer, "") })
	if res != created {
		_ = s.conn.Close()
		c.untrackSocket(s.raw)
		live.done()
		return
	}
	cv.onEnd = live.done
	cv.socks = append(cv.socks, s)
	cv.start(s, false, s.detail)
	cv.unlock()
	c.readLoop(cv, s, 0)
}

// errStopping fails a dial that a stopping connector will not use.
var errStopping = errors.New("connector stopping")

// dial opens a socket to the client-mode target, with its TLS or DTLS handshake. The dial
// and the handshake give up when the connector stops.
func (c *Connector) dial(p *rules.Program) (*streamSocket, error) {
	network, address := c.address(p)
	host, _, _ := net.SplitHostPort(address)
	if p.TLS.Enabled && p.Transport == v1alpha1.TransportUDP {
		raddr, err := net.ResolveUDPAddr(network, address)
		if err != nil {
			return nil, fmt.Errorf("dial %s/%s: %w", network, address, err)
		}
		// The DTLS library writes with WriteTo, which a connected UDP socket refuses.
		pc, err := net.ListenUDP(network, nil)
		if err != nil {
			return nil, fmt.Errorf("dial %s/%s: %w", network, address, err)
		}
		if !c.trackSocket(pc, true) {
			return nil, fmt.Errorf("dial %s/%s: %w", network, address, errStopping)
		}
		conn, err := c.secureClient(p, nil, pc, raddr, host)
		if err != nil {
			_ = pc.Close()
			c.untrackSocket(pc)
			return nil, err
		}
		return c.newStreamSocket(conn, pc, p.Transport), nil
	}
	d := net.Dialer{Timeout: c.opts.DialTimeout}
	conn, err := d.DialContext(c.stopContext(), network, address)
	if err != nil {
		return nil, fmt.Errorf("dial %s/%s: %w", network, address, err)
	}
	if !c.trackSocket(conn, true) {
		return nil, fmt.Errorf("dial %s/%s: %w", network, address, errStopping)
	}
	if p.TLS.Enabled {
		sc, err := c.secureClient(p, conn, nil, conn.RemoteAddr(), host)
		if err != nil {
			c.untrackSocket(conn)
			return nil, err
		}
		s := c.newStreamSocket(sc, conn, p.Transport)
		s.detail = tlsDetail(sc.(*tls.Conn).ConnectionState())
		return s, nil
	}
	return c.newStreamSocket(conn, conn, p.Transport), nil
}

// reconnect replaces the conversation's sockets with a new one (client mode). Called with
// mu held; the dial blocks only this conversation.
func (cv *conversation) reconnect(a *v1alpha1.ActivityRecord) socket {
	for _, s := range cv.socks {
		s.close()
	}
	cv.socks = nil
	s, err := cv.c.dial(cv.prog)
	if err != nil {
		note(a, "reconnect: "+err.Error())
		return nil
	}
	if !cv.c.startReader(cv, s) {
		_ = s.conn.Close()
		cv.c.untrackSocket(s.raw)
		note(a, "reconnect: "+errStopping.Error())
		return nil
	}
	cv.socks = append(cv.socks, s)
	return s
}
