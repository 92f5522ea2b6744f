package connector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/parley-dev/parley/rules"
)

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
