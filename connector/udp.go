package connector

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

// ServePacket reads datagrams on pc, each an input of its peer's conversation, until
// Shutdown or Close (then it returns ErrServerClosed) or a read error that is not
// temporary, which it returns. Temporary errors are recorded and retried as Serve's are.
// It is for rules on UDP without operation.tls (DTLS is served by Serve, on a DTLS
// listener). Shutdown closes pc once the conversations' endings are sent; ServePacket closes
// it when it returns. It serves at once: executionDelay is ListenAndServe's.
func (c *Connector) ServePacket(pc net.PacketConn) error {
	p := c.current.Load().prog
	var err error
	switch {
	case p.Mode == v1alpha1.ModeClient:
		err = errors.New("connector: the rules are in client mode: use RunClients")
	case p.Transport != v1alpha1.TransportUDP:
		err = errors.New("connector: the rules are on TCP: use Serve")
	case p.TLS.Enabled:
		err = errors.New("connector: the rules ask for DTLS: use Serve with a DTLS listener, or ListenAndServe")
	}
	if err != nil {
		_ = pc.Close()
		return err
	}
	if !c.serving.add() {
		_ = pc.Close()
		return ErrServerClosed
	}
	defer c.serving.done()
	upc, ok := pc.(packetConn)
	if !ok {
		upc = anyPacketConn{pc}
	}
	return c.servePacket(upc, p)
}

// listenUDP opens the UDP socket the rules say.
func (c *Connector) listenUDP(p *rules.Program) (*net.UDPConn, error) {
	network, address := c.address(p)
	pc, err := net.ListenPacket(network, address)
	if err != nil {
		return nil, fmt.Errorf("listen on %s/%s: %w", network, address, err)
	}
	conn := pc.(*net.UDPConn)
	// The kernel caps the size silently; an error would leave its default, which only costs
	// datagrams in bursts, counted as the kernel's drops (socketDrops).
	_ = conn.SetReadBuffer(udpReadBuffer)
	return conn, nil
}

// udpReadBuffer is the receive buffer a UDP server asks of the kernel (SO_RCVBUF), which
// caps it at net.core.rmem_max. A burst of datagrams beyond the buffer is dropped by the
// kernel before the connector sees it, real clients' among spoofed ones; the default
// (about 208 KiB, some 170 full datagrams of 512 bytes as the kernel counts them) is
// crossed by a millisecond of a flood the connector would otherwise keep up with. DNS
// servers ask for a few MiB for the same reason.
const udpReadBuffer = 4 << 20

// servePacket runs the read loop of pc for a serving call.
func (c *Connector) servePacket(pc packetConn, p *rules.Program) error {
	defer pc.Close()
	if !c.trackPacket(pc) {
		return ErrServerClosed
	}
	defer c.untrackPacket(pc)
	if !c.started(p, pc.LocalAddr(), "listening on "+pc.LocalAddr().String()+"/UDP") {
		return ErrServerClosed
	}
	return c.udpLoop(pc, p)
}

// packetConn is what a UDP server needs of its socket: *net.UDPConn has it, and reads and
// writes without an allocation per datagram.
type packetConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	LocalAddr() net.Addr
	Close() error
}

// anyPacketConn adapts another net.PacketConn.
type anyPacketConn struct{ net.PacketConn }

func (a anyPacketConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, from, err := a.ReadFrom(b)
	if from == nil {
		return n, netip.AddrPort{}, err
	}
	return n, addrPortOf(from), err
}

func (a anyPacketConn) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	return a.WriteTo(b, net.UDPAddrFromAddrPort(to))
}

// udpPeer is the address a UDP server conversation replies to.
type udpPeer struct {
	pc   packetConn
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

// udpLoop reads datagrams until the connector stops or pc fails; each is one input of its
// peer's conversation.
func (c *Connector) udpLoop(pc packetConn, p *rules.Program) error {
	limiter := newPeerLimiter(c.opts.UDPPeerRate, c.opts.UDPPeerBurst, p.PeerPrefixV6)
	buf := make([]byte, 64<<10)
	var delay time.Duration
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if c.isStopping() {
				return ErrServerClosed
			}
			if !temporaryRead(err) {
				return fmt.Errorf("read on %s/UDP: %w", pc.LocalAddr(), err)
			}
			delay = c.retryAfter(p, delay, "read on "+pc.LocalAddr().String()+"/UDP", err)
			continue
		}
		delay = 0
		from = unmap(from)
		if !limiter.allow(from.Addr(), time.Now()) {
			c.refuse(refusedRate, from, v1alpha1.TransportUDP, p.PeerPrefixV6)
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

// temporaryRead says whether a read error of a UDP server socket may go away: a temporary
// one, or one that reports what became of an earlier datagram sent (an ICMP error), not the
// state of the socket.
func temporaryRead(err error) bool {
	return temporary(err) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// datagram handles one datagram; false means the conversation had already ended.
func (cv *conversation) datagram(pc packetConn, from netip.AddrPort, raw []byte) bool {
	cv.mu.Lock()
	defer cv.unlock()
	if cv.ended {
		return false
	}
	s := cv.current()
	if s == nil || s.remote() != from {
		s = &udpPeer{pc: pc, addr: from}
		cv.socks = []socket{s}
		cv.peerChanged(s)
	}
	cv.ampWin().received(cv.c.ampNow(), len(raw))
	max := cv.prog.MaxInputSize
	cv.handleInput(s, raw[:min(len(raw), max)], len(raw) > max)
	return true
}
