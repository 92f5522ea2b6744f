package connector

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
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

// streamSocket is a TCP connection, or a connected UDP socket in client mode.
type streamSocket struct {
	conn         net.Conn
	peer         netip.AddrPort
	datagrams    bool
	writeTimeout time.Duration
	byUs         atomic.Bool
	detail       string // the TLS session of a client socket, for the Connected activity
}

func (s *streamSocket) send(buf []byte, ends []int) (int, error) {
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	if !s.datagrams {
		return s.conn.Write(buf)
	}
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
}

func (s *streamSocket) closedByUs() bool       { return s.byUs.Load() }
func (s *streamSocket) remote() netip.AddrPort { return s.peer }

// readLoop turns reads into inputs until the socket closes.
func (c *Connector) readLoop(cv *conversation, s *streamSocket) {
	limit := cv.prog.MaxInputSize
	size := limit
	if s.datagrams {
		size++ // one more byte tells a datagram was cut
	}
	if _, ok := s.conn.(*dtls.Conn); ok {
		size = max(size, maxDTLSRecord+1) // a DTLS read must hold the whole record
	}
	buf := make([]byte, size)
	for {
		n, err := s.conn.Read(buf)
		if n > 0 {
			truncated := n >= limit
			if s.datagrams {
				truncated = n > limit
				n = min(n, limit)
			}
			cv = cv.input(s, buf[:n], truncated)
		}
		if err != nil {
			_ = s.conn.Close()
			cv.socketClosed(s, err)
			return
		}
	}
}

// startReader runs readLoop on its own goroutine.
func (c *Connector) startReader(cv *conversation, s *streamSocket) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.readLoop(cv, s)
	}()
}

func (c *Connector) newStreamSocket(conn net.Conn, transport v1alpha1.Transport) *streamSocket {
	peer := addrPortOf(conn.RemoteAddr())
	return &streamSocket{
		conn: conn, peer: unmap(peer), datagrams: transport == v1alpha1.TransportUDP, writeTimeout: c.opts.WriteTimeout,
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

// reject refuses a peer and records why.
func (c *Connector) reject(peer netip.AddrPort, transport v1alpha1.Transport, reason string) {
	c.rejected.Add(1)
	c.record(&v1alpha1.ActivityRecord{
		Time:       nowMicro(),
		Type:       v1alpha1.ActivityRejected,
		Connection: &v1alpha1.ConnectionRef{Peer: peer.String(), Transport: transport},
		Message:    reason,
	})
}

// join finds or creates the conversation of a peer and hands it the socket; it returns nil
// when the peer is refused (the refusal is recorded) or the connector is stopping.
// deferGreeting is set for UDP servers, which greet before their first reply; detail goes
// into the Connected activity.
// key is the peer's address key, or its session's; session is the id a new conversation
// starts with.
func (c *Connector) join(key connKey, peer netip.AddrPort, s socket, deferGreeting bool, detail, session string) *conversation {
	g := c.current.Load()
	p := g.prog
	if c.paused.Load() {
		if cv := c.conns.lookup(key); cv == nil {
			c.reject(peer, p.Transport, "connector paused")
			return nil
		}
	}
	for {
		cv, res := c.conns.join(key, p.MaxConnections, func() *conversation { return c.newConversation(g, peer, session) })
		switch res {
		case overCap:
			c.reject(peer, p.Transport, "over maxConcurrentConnections")
			return nil
		case stopping:
			return nil
		case created:
			cv.socks = append(cv.socks, s)
			cv.start(s, deferGreeting, detail)
			cv.mu.Unlock()
			return cv
		}
		if _, isUDP := s.(*udpPeer); isUDP {
			// A datagram is not a socket: datagram() points the conversation at its sender.
			return cv
		}
		cv.mu.Lock()
		if !cv.ended && len(cv.socks) >= maxSocketsPerConversation {
			cv.mu.Unlock()
			c.reject(peer, p.Transport, fmt.Sprintf("over %d sockets for one logical connection", maxSocketsPerConversation))
			return nil
		}
		ok := cv.attach(s)
		if ok {
			a := cv.activity(v1alpha1.ActivityConnected)
			a.Message = joinMessage("socket joined the live conversation", detail)
			cv.record(a)
		}
		cv.mu.Unlock()
		if ok {
			return cv
		}
		// It ended while we waited for its lock; start a new one.
	}
}

// joinMessage describes a socket joining a live conversation, with its TLS detail if any.
func joinMessage(what, detail string) string {
	if detail == "" {
		return what
	}
	return what + "; " + detail
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
