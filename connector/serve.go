package connector

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

const stopReason = "connector stopping"

func (c *Connector) runTCPServer(ctx context.Context, p *rules.Program) error {
	network, address := c.address(p)
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, network, address)
	if err != nil {
		return fmt.Errorf("listen on %s/%s: %w", network, address, err)
	}
	if err := setBacklog(ln, p.ConnectionQueue); err != nil {
		_ = ln.Close()
		return fmt.Errorf("set connectionQueue on %s: %w", address, err)
	}
	return c.serveListener(ctx, p, ln)
}

// serveListener accepts connections of a TCP or DTLS listener until ctx is cancelled, then
// ends the conversations gracefully.
func (c *Connector) serveListener(ctx context.Context, p *rules.Program, ln net.Listener) error {
	c.addr = ln.Addr()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.acceptLoop(ln, p)
	}()
	c.started(p, "listening on "+ln.Addr().String()+"/"+string(p.Transport)+tlsSuffix(p))
	<-ctx.Done()
	_ = ln.Close()
	c.stop(stopReason, nil)
	return nil
}

// setBacklog applies connectionQueue: Go listens with the system's maximum backlog, and
// calling listen(2) again on a listening socket changes it.
func setBacklog(ln net.Listener, backlog int) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil
	}
	raw, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	var lerr error
	if err := raw.Control(func(fd uintptr) { lerr = syscall.Listen(int(fd), backlog) }); err != nil {
		return err
	}
	return lerr
}

func (c *Connector) runUDPServer(ctx context.Context, p *rules.Program) error {
	network, address := c.address(p)
	var lc net.ListenConfig
	pconn, err := lc.ListenPacket(ctx, network, address)
	if err != nil {
		return fmt.Errorf("listen on %s/%s: %w", network, address, err)
	}
	pc := pconn.(*net.UDPConn)
	c.addr = pc.LocalAddr()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.udpLoop(pc)
	}()
	c.started(p, "listening on "+pc.LocalAddr().String()+"/UDP")
	<-ctx.Done()
	// End conversations first so that their ending datagrams still go out.
	c.stop(stopReason, func() { _ = pc.Close() })
	return nil
}

// runDTLSServer serves DTLS: the library's listener demultiplexes peers into connections,
// so each conversation reads its own socket as over TCP, one datagram per read.
func (c *Connector) runDTLSServer(ctx context.Context, p *rules.Program) error {
	network, address := c.address(p)
	laddr, err := net.ResolveUDPAddr(network, address)
	if err != nil {
		return fmt.Errorf("listen on %s/%s: %w", network, address, err)
	}
	ln, err := dtls.ListenWithOptions(network, laddr, c.opts.TLS.dtlsServerOptions(p)...)
	if err != nil {
		return fmt.Errorf("listen on %s/%s: %w", network, address, err)
	}
	return c.serveListener(ctx, p, ln)
}

func tlsSuffix(p *rules.Program) string {
	switch {
	case !p.TLS.Enabled:
		return ""
	case p.Transport == v1alpha1.TransportUDP:
		return " (DTLS)"
	default:
		return " (TLS)"
	}
}

// udpPeer is the address a UDP server conversation replies to.
type udpPeer struct {
	pc   *net.UDPConn
	addr netip.AddrPort
}

func (u *udpPeer) send(buf []byte, ends []int) (int, error) {
	total, start := 0, 0
	for _, end := range ends {
		if end > start {
			n, err := u.pc.WriteToUDPAddrPort(buf[start:end], u.addr)
			total += n
			if err != nil {
				return total, err
			}
		}
		start = end
	}
	return total, nil
}

func (u *udpPeer) close()                 {}
func (u *udpPeer) closedByUs() bool       { return false }
func (u *udpPeer) remote() netip.AddrPort { return u.addr }

// udpLoop reads datagrams until pc is closed; each is one input of its peer's conversation.
func (c *Connector) udpLoop(pc *net.UDPConn) {
	limiter := newPeerLimiter(c.opts.UDPPeerRate, c.opts.UDPPeerBurst)
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		from = unmap(from)
		if !limiter.allow(from.Addr(), time.Now()) {
			c.rateLimited.Add(1)
			continue
		}
		for range 2 { // a second try when the conversation ended under us
			var cv *conversation
			s := &udpPeer{pc: pc, addr: from}
			if p := c.current.Load().prog; p.Session != nil {
				cv = c.routeSession(p, s, buf[:n], true, "")
			} else {
				cv = c.join(keyOf(p, from), from, s, true, "", "")
			}
			if cv == nil || cv.datagram(pc, from, buf[:n]) {
				break
			}
		}
	}
}

// datagram handles one datagram; false means the conversation had already ended.
func (cv *conversation) datagram(pc *net.UDPConn, from netip.AddrPort, raw []byte) bool {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if cv.ended {
		return false
	}
	s := cv.current()
	if s == nil || s.remote() != from {
		s = &udpPeer{pc: pc, addr: from}
		cv.socks = []socket{s}
		cv.peerChanged(s)
	}
	cv.rxDatagrams++
	cv.rxBytes += len(raw)
	max := cv.prog.MaxInputSize
	cv.handleInput(s, raw[:min(len(raw), max)], len(raw) > max)
	return true
}

// runClient opens maxConcurrentConnections conversations to the target and returns when all
// have ended (or ctx is cancelled, ending them).
func (c *Connector) runClient(ctx context.Context, p *rules.Program) error {
	g := c.current.Load()
	n := p.MaxConnections
	var live sync.WaitGroup
	var connected atomic.Int64
	_, address := c.address(p)
	c.started(p, fmt.Sprintf("dialing %s/%s, %d conversations", address, p.Transport, n))
	for i := range n {
		live.Add(1)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.runClientConversation(g, i, &live, &connected)
		}()
	}
	allEnded := make(chan struct{})
	go func() {
		live.Wait()
		close(allEnded)
	}()
	reason := "all conversations ended"
	select {
	case <-ctx.Done():
		reason = stopReason
	case <-allEnded:
	}
	c.stop(reason, nil)
	<-allEnded
	if connected.Load() == 0 {
		return fmt.Errorf("no conversation could connect to %s/%s", address, p.Transport)
	}
	return nil
}

func (c *Connector) runClientConversation(g *generation, i int, live *sync.WaitGroup, connected *atomic.Int64) {
	p := g.prog
	s, err := c.dial(p)
	if err != nil {
		c.record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityError, RulesRef: &p.Ref, Message: err.Error()})
		live.Done()
		return
	}
	connected.Add(1)
	key := addrKey(netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}), 0))
	cv, res := c.conns.join(key, p.MaxConnections, func() *conversation { return c.newConversation(g, s.peer, "") })
	if res != created {
		_ = s.conn.Close()
		live.Done()
		return
	}
	cv.onEnd = live.Done
	cv.socks = append(cv.socks, s)
	cv.start(s, false, s.detail)
	cv.mu.Unlock()
	c.readLoop(cv, s)
}

// dial opens a socket to the client-mode target, with its TLS or DTLS handshake.
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
		conn, err := c.secureClient(p, nil, pc, raddr, host)
		if err != nil {
			_ = pc.Close()
			return nil, err
		}
		return c.newStreamSocket(conn, p.Transport), nil
	}
	d := net.Dialer{Timeout: c.opts.DialTimeout}
	conn, err := d.DialContext(c.runCtx, network, address)
	if err != nil {
		return nil, fmt.Errorf("dial %s/%s: %w", network, address, err)
	}
	if p.TLS.Enabled {
		sc, err := c.secureClient(p, conn, nil, conn.RemoteAddr(), host)
		if err != nil {
			return nil, err
		}
		s := c.newStreamSocket(sc, p.Transport)
		s.detail = tlsDetail(sc.(*tls.Conn).ConnectionState())
		return s, nil
	}
	return c.newStreamSocket(conn, p.Transport), nil
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
	cv.socks = append(cv.socks, s)
	cv.c.startReader(cv, s)
	return s
}
