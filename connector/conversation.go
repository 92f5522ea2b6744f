package connector

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
	"github.com/parley-dev/parley/rules/expr"
	"github.com/parley-dev/parley/rules/value"
)

// Bounds that keep a hostile peer from growing a conversation without limit.
const (
	maxPendingTasks = 1024
	maxZeroDelayRun = rules.MaxZeroDelayChain
	maxValueBytes   = 64 << 10
	// maxSocketsPerConversation bounds the sockets one logical connection may hold, so a
	// single IP cannot exhaust descriptors by joining its conversation again and again.
	maxSocketsPerConversation = 64
	noSocketForReply          = "no open socket: reply not sent"
)

// conversation is one logical connection: its memory, sockets, timers and pending async
// rules. Every field below mu is guarded by it; socket readers, timers and orders all take it.
type conversation struct {
	c    *Connector
	gen  *generation
	prog *rules.Program
	key  connKey // guarded by the registry's lock
	// alias is a second key, the address that started a session-mode conversation given a
	// generated id; guarded by the registry's lock.
	alias connKey
	// source is the source counted for maxConnectionsPerPeer; guarded by the registry's lock.
	source netip.Prefix
	id     string

	mu        sync.Mutex
	ref       *v1alpha1.ConnectionRef
	peer      netip.AddrPort
	session   string // the session id (operation.session)
	mem       []value.Value
	socks     []socket // open sockets; the last one receives async replies
	ended     bool
	greet     bool // greetings still to send (UDP server: before the first reply)
	lastInput time.Time
	idle      *time.Timer
	// age ends the conversation at operation.maxConversationAge, however active.
	age       *time.Timer
	tasks     taskQueue
	taskTimer *time.Timer
	taskSeq   uint64
	// closeWhenDone are the sockets answered under socket.closeAfterReplying, closed once
	// the async rules pending with their replies have run.
	closeWhenDone []socket
	// amp weighs bytes out against bytes in for the UDP amplification guard
	// (amplification.go).
	amp ampWindow
	// scratch buffers reused across inputs: the replies to send (one message per entry of
	// ends), and the indexes in ends of those from amplification: Unbounded rules.
	wire      []byte
	ends      []int
	unbounded []int
	fired     []*rules.Rule
	// cands are the rules whose regexes may match the input (the program's prefilter).
	cands rules.Candidates
	// exprAct is what the conversation's CEL expressions read, exprCaptures what a rule's
	// captures would store while its when is evaluated (expressions.go); replyScratch holds
	// a reply being rewritten by transform.output.
	exprAct      *expr.Activation
	exprCaptures []exprCapture
	replyScratch []byte
	// onEnd, if set, is called once the conversation has ended, with mu held: it must not
	// take it.
	onEnd func()
	// stage redirects memory during a shared step (shared.go); sharedDown skips the rules
	// on shared variables for the rest of an input whose step failed.
	stage      *sharedStage
	sharedDown bool
}

func (c *Connector) newConversation(g *generation, peer netip.AddrPort, session string) *conversation {
	p := g.prog
	cv := &conversation{
		c: c, gen: g, prog: p, id: c.newConnectionID(), peer: peer, session: session,
		mem: rules.NewValues(p.Connection), lastInput: time.Now(),
	}
	cv.ref = cv.newRef()
	return cv
}

// start runs the beginning of a conversation: Connected (with detail, such as the TLS
// session), greetings (unless deferred to the first input), the onStart rules and the idle
// timer. Called with mu held.
func (cv *conversation) start(s socket, deferGreeting bool, detail string) {
	a := cv.activity(v1alpha1.ActivityConnected)
	a.Message = detail
	cv.record(a)
	if deferGreeting {
		cv.greet = cv.prog.Greetings != nil
	} else if cv.prog.Greetings != nil {
		cv.sendBasic(v1alpha1.ActivityGreeted, s, cv.prog.Greetings)
	}
	from := newCause("the start of the conversation", "")
	for _, sc := range cv.prog.OnStart {
		cv.schedule(sc, from, nil, 0, nil)
	}
	if t := cv.prog.InteractionTimeout; t > 0 {
		cv.idle = time.AfterFunc(t, func() { cv.c.tasks.run(cv.onIdle) })
	}
	if t := cv.prog.MaxConversationAge; t > 0 {
		cv.age = time.AfterFunc(t, func() { cv.c.tasks.run(cv.onAge) })
	}
}

// onAge ends a conversation that reached maxConversationAge: a peer that trickles a byte
// now and then to keep interactionTimeout away holds its slot no longer than this.
func (cv *conversation) onAge() {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if !cv.ended {
		cv.finish(v1alpha1.ActivityTimedOut, "older than maxConversationAge "+cv.prog.MaxConversationAge.String(), cv.prog.Timeout, cv.prog.Ending)
	}
}

// sendBasic sends a basic rule on its own and records it as an activity of type typ.
func (cv *conversation) sendBasic(typ v1alpha1.ActivityType, s socket, b *rules.Basic) {
	a := cv.activity(typ)
	a.Rules = &v1alpha1.RulesRecord{Basic: b.Name}
	a.Alert = a.Alert || b.Alert
	cv.resetReplies()
	cv.appendReply(b.Template)
	replied(a)
	cv.send(s, a)
	cv.record(a)
}

// attach adds a socket that joined a live conversation (same key, new TCP connection).
func (cv *conversation) attach(s socket) bool {
	if cv.ended {
		return false
	}
	cv.socks = append(cv.socks, s)
	cv.peerChanged(s)
	return true
}

// peerChanged points the conversation's peer (the activities' connection.peer, {{IP}},
// {{PORT}}) at s, the socket in use: the one that sent the input being handled, the one an
// async reply, the timeout or the ending goes to, the one that joined or closed.
func (cv *conversation) peerChanged(s socket) {
	if s == nil {
		return
	}
	if p := s.remote(); p != cv.peer {
		cv.peer = p
		cv.ref = cv.newRef()
	}
}

// current is the socket async replies go to.
func (cv *conversation) current() socket {
	if len(cv.socks) == 0 {
		return nil
	}
	return cv.socks[len(cv.socks)-1]
}

// touch records interaction for the idle timeout.
func (cv *conversation) touch(now time.Time) {
	cv.lastInput = now
	if cv.idle != nil {
		cv.idle.Reset(cv.prog.InteractionTimeout)
	}
}

func (cv *conversation) onIdle() {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if cv.ended {
		return
	}
	t := cv.prog.InteractionTimeout
	if left := t - time.Since(cv.lastInput); left > 0 {
		cv.idle.Reset(left)
		return
	}
	cv.finish(v1alpha1.ActivityTimedOut, "idle for "+t.String(), cv.prog.Timeout, cv.prog.Ending)
}

// endByOrder ends the conversation because the connector stops (Ctrl-C, End order).
func (cv *conversation) endByOrder(reason string) {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if !cv.ended {
		cv.finish(v1alpha1.ActivityEnded, reason, cv.prog.Ending)
	}
}

// abort ends the conversation without its ending rule: Close has cut its sockets.
func (cv *conversation) abort() {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if !cv.ended {
		cv.finish(v1alpha1.ActivityEnded, closeReason)
	}
}

// finish ends the conversation from its current socket (a timeout, an order): see finishOn.
func (cv *conversation) finish(typ v1alpha1.ActivityType, msg string, basics ...*rules.Basic) {
	cv.finishOn(cv.current(), typ, msg, basics...)
}

// finishOn ends the conversation: it sends the given basic rules on s, closes every socket,
// forgets the conversation and records an activity of type typ. With no socket to send on
// (a conversation lingering without one), nothing is sent and the activity names no basic
// rule. Called with mu held.
func (cv *conversation) finishOn(s socket, typ v1alpha1.ActivityType, msg string, basics ...*rules.Basic) {
	cv.ended = true
	if cv.idle != nil {
		cv.idle.Stop()
	}
	if cv.age != nil {
		cv.age.Stop()
	}
	if cv.taskTimer != nil {
		cv.taskTimer.Stop()
	}
	cv.tasks = nil
	cv.closeWhenDone = nil
	cv.peerChanged(s)
	a := cv.activity(typ)
	a.Message = msg
	cv.resetReplies()
	var names []string // the activity names the first basic rule sent (timeout, before ending)
	for _, b := range basics {
		if b == nil {
			continue
		}
		names = append(names, b.Name)
		if s != nil {
			a.Alert = a.Alert || b.Alert
			cv.appendReply(b.Template)
		}
	}
	switch {
	case len(names) == 0:
	case s == nil:
		note(a, "no open socket: "+strings.Join(names, " and ")+" not sent")
	default:
		a.Rules = &v1alpha1.RulesRecord{Basic: names[0]}
		replied(a)
		cv.send(s, a)
	}
	for _, s := range cv.socks {
		s.close()
	}
	cv.socks = nil
	cv.c.conns.remove(cv)
	cv.record(a)
	if cv.onEnd != nil {
		cv.onEnd()
	}
}

// socketClosed is called by a reader when its socket is gone. The logical connection lives
// on while another socket is open, or, when interactionTimeout will end it, if the socket
// was closed by a rule or by closeAfterReplying, or the session (not the socket) identifies
// the conversation; otherwise the peer ended it.
func (cv *conversation) socketClosed(s socket, err error) {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	for i, o := range cv.socks {
		if o == s {
			cv.socks = append(cv.socks[:i], cv.socks[i+1:]...)
			break
		}
	}
	if cv.ended {
		return
	}
	if cv.c.hardStop.Load() {
		cv.finish(v1alpha1.ActivityEnded, closeReason)
		return
	}
	if len(cv.socks) > 0 {
		return
	}
	cv.peerChanged(s)
	byUs := s.closedByUs()
	if (byUs || cv.prog.CloseAfterReplying || cv.prog.Session != nil) && cv.prog.InteractionTimeout > 0 {
		return
	}
	switch {
	case byUs:
		cv.finish(v1alpha1.ActivityEnded, "socket closed on our side (closeConnection or closeAfterReplying) and no interactionTimeout to wait for the peer's return")
	case err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
		cv.finish(v1alpha1.ActivityEnded, "peer closed the connection")
	default:
		cv.finish(v1alpha1.ActivityBroken, err.Error())
	}
}

// activity starts an activity of this conversation.
func (cv *conversation) activity(typ v1alpha1.ActivityType) *v1alpha1.ActivityRecord {
	return &v1alpha1.ActivityRecord{
		Time: nowMicro(), Type: typ, Connection: cv.ref, RulesRef: &cv.prog.Ref, Alert: cv.prog.AlertAll,
	}
}

func (cv *conversation) record(a *v1alpha1.ActivityRecord) {
	if cv.prog.ReportMemory && a.Type != v1alpha1.ActivityError {
		a.Memory = cv.snapshot()
	}
	cv.c.record(a)
}

// recordError records an Error activity of this conversation (once a shared step under
// way commits).
func (cv *conversation) recordError(msg string) {
	if cv.stage != nil {
		cv.stage.errs = append(cv.stage.errs, msg)
		return
	}
	a := cv.activity(v1alpha1.ActivityError)
	a.Message = msg
	cv.c.record(a)
}

func (cv *conversation) snapshot() *v1alpha1.MemorySnapshot {
	m := &v1alpha1.MemorySnapshot{}
	for i, v := range cv.prog.Connection {
		if v.Report {
			if m.Connection == nil {
				m.Connection = map[string]string{}
			}
			m.Connection[v.Name] = cv.mem[i].String()
		}
	}
	cv.c.globalMu.Lock()
	for i, v := range cv.prog.Global {
		if v.Report {
			if m.Global == nil {
				m.Global = map[string]string{}
			}
			m.Global[v.Name] = cv.gen.global[i].v.String()
		}
	}
	cv.c.globalMu.Unlock()
	if m.Connection == nil && m.Global == nil {
		return nil
	}
	return m
}

// Get implements rules.Env.
func (cv *conversation) Get(r rules.VarRef) value.Value {
	if cv.stage != nil || r.Scope == rules.ScopeShared {
		if v, ok := cv.stagedGet(r); ok {
			return v
		}
	}
	if r.Scope == rules.ScopeConnection {
		return cv.mem[r.Index]
	}
	cv.c.globalMu.Lock()
	v := cv.gen.global[r.Index].v
	cv.c.globalMu.Unlock()
	return v
}

// set stores v, converted to the variable's type (text read as Lope reads it, see
// value.FromText) and bounded in size.
func (cv *conversation) set(r rules.VarRef, v value.Value) error {
	v, err := v.Store(r.Kind)
	if err != nil {
		return errors.New("variable " + r.Name + ": " + err.Error())
	}
	if v.Kind() == value.String && len(v.AsString()) > maxValueBytes {
		v = value.OfString(v.AsString()[:maxValueBytes])
		cv.recordError("variable " + r.Name + ": value cut to " + strconv.Itoa(maxValueBytes) + " bytes")
	}
	if cv.stage != nil || r.Scope == rules.ScopeShared {
		cv.stagedSet(r, v)
		return nil
	}
	if r.Scope == rules.ScopeConnection {
		cv.mem[r.Index] = v
		return nil
	}
	cv.c.globalMu.Lock()
	cv.gen.global[r.Index].v = v
	cv.c.globalMu.Unlock()
	return nil
}

// PeerIP implements rules.Env.
func (cv *conversation) PeerIP() string { return cv.peer.Addr().String() }

// PeerPort implements rules.Env.
func (cv *conversation) PeerPort() string { return strconv.Itoa(int(cv.peer.Port())) }

func nowMicro() metav1.MicroTime { return metav1.NewMicroTime(time.Now()) }

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

// refusePeer refuses a peer: a UDP datagram's source proves nothing, its refusal is
// summarised (refusals.go); a socket's is recorded, with msg ("" for the per-source cap).
func (c *Connector) refusePeer(isUDP bool, reason refusalReason, peer netip.AddrPort, p *rules.Program, msg string) {
	if isUDP {
		c.refuse(reason, peer, p.Transport, p.PeerPrefixV6)
		return
	}
	if reason == refusedPeerCap {
		msg = fmt.Sprintf("over maxConnectionsPerPeer (%d logical connections of %s)",
			p.MaxConnectionsPerPeer, sourceOf(peer.Addr(), p.PeerPrefixV6))
	}
	c.reject(peer, p.Transport, msg)
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
	_, isUDP := s.(*udpPeer)
	if c.paused.Load() {
		if cv := c.conns.lookup(key); cv == nil {
			c.refusePeer(isUDP, refusedPaused, peer, p, "connector paused")
			return nil
		}
	}
	for {
		var source netip.Prefix // only computed when capped: join runs for every datagram
		if p.MaxConnectionsPerPeer > 0 {
			source = sourceOf(peer.Addr(), p.PeerPrefixV6)
		}
		cv, res := c.conns.join(key, p.MaxConnections, source, p.MaxConnectionsPerPeer,
			func() *conversation { return c.newConversation(g, peer, session) })
		switch res {
		case overCap:
			c.refusePeer(isUDP, refusedCap, peer, p, "over maxConcurrentConnections")
			return nil
		case overSourceCap:
			c.refusePeer(isUDP, refusedPeerCap, peer, p, "")
			return nil
		case stopping:
			return nil
		case created:
			cv.socks = append(cv.socks, s)
			cv.start(s, deferGreeting, detail)
			cv.mu.Unlock()
			return cv
		}
		if isUDP {
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
