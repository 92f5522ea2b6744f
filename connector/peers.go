package connector

import (
	"fmt"
	"io"
	"net/netip"

	"github.com/parley-dev/parley/rules"
)

// Per-source fairness (docs/hardening.md): a source is an IPv4 address or an IPv6 prefix
// (operation.peerPrefixV6, a /64 by default: one host is usually given a whole /64). With
// operation.maxConnectionsPerPeer, a source's accepted sockets and its logical connections
// are capped, so that one source cannot take every slot of maxConcurrentConnections; the
// check comes at accept, before any TLS or DTLS handshake spends anything on the peer.

// sourceOf is the source an address belongs to.
func sourceOf(a netip.Addr, prefixV6 int) netip.Prefix {
	a = a.Unmap()
	if a.Is4() || prefixV6 <= 0 {
		return netip.PrefixFrom(a, a.BitLen())
	}
	p, _ := a.Prefix(min(prefixV6, 128))
	return p
}

// socketState is what the connector knows of a tracked socket. Every open socket has an
// entry in Connector.sockets, so it is kept to two bytes (docs/performance.md §1); the
// source of a socket counted in peers is in socketSources, for programs that cap sources.
type socketState struct {
	// held: a conversation holds the socket.
	held bool
	// handshake: the socket is in its TLS or DTLS handshake, counted in handshakes.
	handshake bool
}

// release gives back what socket s, in state st, counts. Called with mu held.
func (c *Connector) release(s io.Closer, st socketState) {
	if st.handshake {
		c.handshakes--
	}
	if source, ok := c.socketSources[s]; ok {
		delete(c.socketSources, s)
		if n := c.peers[source] - 1; n > 0 {
			c.peers[source] = n
		} else {
			delete(c.peers, source)
		}
	}
}

// admit tracks a socket accepted for p, or says why it is refused: with TLS or DTLS, the
// handshakes under way and the live conversations together are at maxConcurrentConnections
// (a handshake holds a descriptor and memory as a conversation does) and no DTLS handshake
// before its cookie can be evicted for it (dtls.go), or its source has
// maxConnectionsPerPeer sockets already. A stopping connector closes it and says nothing
// (stopped is true). reason says which refusal, for a summary.
func (c *Connector) admit(s io.Closer, peer netip.AddrPort, p *rules.Program) (refusal string, reason refusalReason, stopped bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		_ = s.Close()
		return "", 0, true
	}
	st := socketState{handshake: p.TLS.Enabled}
	if st.handshake && c.handshakes+c.conns.len() >= p.MaxConnections && !c.evictUnverified(s) {
		return "over maxConcurrentConnections (TLS and DTLS handshakes under way included)", refusedHandshakeCap, false
	}
	if p.MaxConnectionsPerPeer > 0 {
		source := sourceOf(peer.Addr(), p.PeerPrefixV6)
		if c.peers[source] >= p.MaxConnectionsPerPeer {
			return fmt.Sprintf("over maxConnectionsPerPeer (%d sockets of %s)", p.MaxConnectionsPerPeer, source), refusedPeerCap, false
		}
		c.peers[source]++
		c.socketSources[s] = source
	}
	if st.handshake {
		c.handshakes++
	}
	c.sockets[s] = st
	return "", 0, false
}

// handshaken says the handshake of an admitted socket is over, whatever its outcome.
func (c *Connector) handshaken(s io.Closer) {
	c.mu.Lock()
	if st, ok := c.sockets[s]; ok && st.handshake {
		st.handshake = false
		c.handshakes--
		c.sockets[s] = st
	}
	c.mu.Unlock()
}
