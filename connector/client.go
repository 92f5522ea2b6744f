package connector

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

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
