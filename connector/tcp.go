package connector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/pion/dtls/v3"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

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

// acceptLoop serves the connections of a TCP or DTLS listener until it is closed.
func (c *Connector) acceptLoop(ln net.Listener, p *rules.Program) {
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.serveStream(conn, p)
		}()
	}
}

// serveStream runs one accepted connection: its handshake when p asks for TLS or DTLS,
// then its conversation. A failed handshake is recorded as an Error with its reason.
func (c *Connector) serveStream(conn net.Conn, p *rules.Program) {
	detail := ""
	if p.TLS.Enabled {
		sc, d, err := c.secureServer(p, conn)
		if err != nil {
			peer := addrPortOf(conn.RemoteAddr())
			c.record(&v1alpha1.ActivityRecord{
				Time: nowMicro(), Type: v1alpha1.ActivityError, RulesRef: &p.Ref, Message: err.Error(),
				Connection: &v1alpha1.ConnectionRef{Peer: unmap(peer).String(), Transport: p.Transport},
			})
			_ = conn.Close()
			return
		}
		conn, detail = sc, d
	}
	s := c.newStreamSocket(conn, p.Transport)
	if p.Session != nil {
		c.serveSessionStream(p, s, detail)
		return
	}
	cv := c.join(keyOf(p, s.peer), s.peer, s, p.Transport == v1alpha1.TransportUDP, detail, "")
	if cv == nil {
		_ = conn.Close()
		return
	}
	c.readLoop(cv, s)
}
