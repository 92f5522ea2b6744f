package connector

import (
	"fmt"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

// Session mode (operation.session): the id an input carries, not the peer's address, says
// which logical connection it belongs to. A new TCP socket therefore joins a conversation
// on its first input, and an input carrying another live session's id moves its socket
// there. Without an id, a peer is keyed by its address, or given a generated id.

// SessionValue implements rules.Env.
func (cv *conversation) SessionValue() string { return cv.session }

// setSession files the conversation under id; false when another live conversation has
// it. Called with mu held.
func (cv *conversation) setSession(id string) bool {
	if id == cv.session {
		return true
	}
	// A plain UDP conversation started by an address stays that address's, so that the
	// datagrams its client sends without the id still reach it.
	udp := cv.prog.Transport == v1alpha1.TransportUDP && !cv.prog.TLS.Enabled
	if cv.prog.Mode != v1alpha1.ModeClient && !cv.c.conns.rekey(cv, sessionKey(id), udp) {
		return false
	}
	cv.session = id
	cv.ref = cv.newRef()
	return true
}

func (cv *conversation) newRef() *v1alpha1.ConnectionRef {
	return &v1alpha1.ConnectionRef{ID: cv.id, Peer: cv.peer.String(), Transport: cv.prog.Transport, Session: cv.session}
}

// updateSession applies a rule's sessionUpdate. Called with mu held.
func (cv *conversation) updateSession(r *rules.Rule) {
	u := r.SessionUpdate
	if u == nil {
		return
	}
	id := u.Value
	switch {
	case u.From != nil:
		id = cv.Get(*u.From).String()
	case u.Generate != nil:
		id = u.NewID()
	}
	if len(id) > rules.MaxSessionValue {
		id = id[:rules.MaxSessionValue]
	}
	switch {
	case id == "":
		cv.recordError(fmt.Sprintf("rule %d: sessionUpdate: empty session id", r.ID))
	case !cv.setSession(id):
		cv.recordError(fmt.Sprintf("rule %d: sessionUpdate: session id %q belongs to another live conversation", r.ID, id))
	}
}

// sessionOf returns the session id raw carries, or "".
func sessionOf(p *rules.Program, raw []byte) string {
	return p.Session.Extract(p.Codec.Decode(raw))
}

// routeSession finds the conversation of a first input (a new TCP socket, or any UDP
// datagram) in session mode, creating it when needed; nil when the peer is refused.
func (c *Connector) routeSession(p *rules.Program, s socket, raw []byte, isUDP bool, detail string) *conversation {
	peer := s.remote()
	id := sessionOf(p, raw)
	// The address that stands in for a missing id. A UDP client's is its IP and port, its
	// socket, whatever identifyBy says: with the IP alone, every client behind one
	// address would share the conversation the first of them started.
	key := keyOf(p, peer)
	if isUDP {
		key = addrKey(peer)
	}
	if id != "" {
		if cv := c.conns.lookup(sessionKey(id)); cv != nil && cv.take(s, !isUDP, detail, "") {
			return cv
		}
		// A peer known by its address presents an id for the first time: adopt it.
		if cv := c.conns.lookup(key); cv != nil && cv.take(s, !isUDP, detail, id) {
			return cv
		}
	} else {
		// A datagram without an id belongs to the conversation its address started, if
		// any: otherwise each would start (and hold) a conversation of its own. A new TCP
		// socket without an id is a new visitor (a browser without its cookie yet).
		if isUDP {
			if cv := c.conns.lookup(key); cv != nil && cv.take(s, false, detail, "") {
				return cv
			}
		}
		if p.Session.Generate != nil {
			id = p.Session.NewID()
		}
	}
	if id == "" {
		return c.join(key, peer, s, true, detail, "")
	}
	cv := c.join(sessionKey(id), peer, s, true, detail, id)
	if cv != nil && isUDP {
		c.conns.setAlias(cv, key)
	}
	return cv
}

// take attaches s to a live conversation found by key; with adopt set, only a conversation
// without a session takes the socket, and files itself under adopt.
func (cv *conversation) take(s socket, record bool, detail, adopt string) bool {
	cv.mu.Lock()
	defer cv.unlock()
	if cv.ended || len(cv.socks) >= maxSocketsPerConversation {
		return false
	}
	if adopt != "" && (cv.session != "" || !cv.setSession(adopt)) {
		return false
	}
	if record {
		cv.attach(s)
		a := cv.activity(v1alpha1.ActivityConnected)
		a.Message = joinMessage("socket joined the conversation of its session", detail)
		cv.record(a)
	}
	return true
}

// followSession sends an input on an established socket to the conversation of the session
// id it carries: a new id is adopted, another live conversation's id moves the socket.
func (c *Connector) followSession(cv *conversation, s socket, raw []byte) *conversation {
	id := sessionOf(cv.prog, raw)
	if id == "" {
		return cv
	}
	cv.mu.Lock()
	if cv.ended || id == cv.session {
		cv.unlock()
		return cv
	}
	other := c.conns.lookup(sessionKey(id))
	if other == nil || other == cv || cv.prog.Mode == v1alpha1.ModeClient {
		if !cv.setSession(id) {
			cv.recordError(fmt.Sprintf("session id %q belongs to another live conversation", id))
		}
		cv.unlock()
		return cv
	}
	cv.detach(s)
	cv.unlock()
	if !other.take(s, true, "moved from "+cv.id, "") {
		cv.mu.Lock()
		cv.attach(s)
		cv.unlock()
		return cv
	}
	return other
}

// detach forgets a socket that moved to another conversation; a conversation left without
// sockets ends unless interactionTimeout will. Called with mu held.
func (cv *conversation) detach(s socket) {
	for i, o := range cv.socks {
		if o == s {
			cv.socks = append(cv.socks[:i], cv.socks[i+1:]...)
			break
		}
	}
	if len(cv.socks) == 0 && cv.prog.InteractionTimeout == 0 {
		cv.finish(v1alpha1.ActivityEnded, "its socket moved to the conversation of another session")
	}
}

// serveSessionStream holds a new TCP socket in session mode until its first input says
// which conversation it belongs to. Sockets waiting so are bounded by
// maxConcurrentConnections and, when set, wait at most interactionTimeout.
func (c *Connector) serveSessionStream(p *rules.Program, s *streamSocket, detail string) {
	if c.waiting.Add(1) > int64(p.MaxConnections) {
		c.waiting.Add(-1)
		c.reject(s.peer, p.Transport, "too many sockets waiting for their first input")
		_ = s.conn.Close()
		return
	}
	var (
		first     []byte
		truncated bool
		err       error
		framed    *frameReader
	)
	if f := framingOf(p); f != nil {
		framed, first, truncated, err = firstFrame(p, s, f)
	} else {
		if t := p.InteractionTimeout; t > 0 {
			_ = s.conn.SetReadDeadline(time.Now().Add(t))
		}
		buf := make([]byte, p.MaxInputSize)
		var n int
		n, err = s.conn.Read(buf)
		_ = s.conn.SetReadDeadline(time.Time{})
		first, truncated = buf[:n], n >= len(buf)
	}
	c.waiting.Add(-1)
	if len(first) == 0 {
		msg := "socket closed before its first input"
		if err != nil {
			msg += ": " + err.Error()
		}
		c.record(&v1alpha1.ActivityRecord{
			Time: nowMicro(), Type: v1alpha1.ActivityEnded, RulesRef: &p.Ref, Message: msg,
			Connection: &v1alpha1.ConnectionRef{Peer: s.peer.String(), Transport: p.Transport},
		})
		_ = s.conn.Close()
		return
	}
	c.holdSocket(s.raw) // it goes to a conversation now: Shutdown ends it, with its socket
	cv := c.routeSession(p, s, first, false, detail)
	if cv == nil {
		_ = s.conn.Close()
		return
	}
	cv = cv.input(s, first, truncated)
	if framed != nil {
		c.framedLoop(cv, framed)
		return
	}
	if err != nil {
		_ = s.conn.Close()
		cv.socketClosed(s, err)
		return
	}
	c.readLoop(cv, s, 0)
}
