package connector

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// maxEvictionsPerJoin bounds the conversations capacityPolicy EvictIdlest ends for one
	// new source: past it, the slots freed having been taken by others, it is refused.
	maxEvictionsPerJoin = 3
)

// conversation is one logical connection: its memory, sockets, timers and pending async
// rules. Every field below mu is guarded by it; socket readers, timers and orders all take it.
//
// An idle conversation costs memory for every connection held (docs/performance.md §1), so
// what only some programs or only a busy conversation need is not kept inline: the scratch
// buffers of a step are borrowed for as long as the lock is held (ws), and the async rules'
// queue (async), the UDP amplification window (amp) and the registry's extra keys (filing)
// are allocated when first used.
type conversation struct {
	c    *Connector
	gen  *generation
	prog *rules.Program
	key  connKey // guarded by the registry's lock
	// filing holds the keys beyond key the registry files the conversation under; nil for
	// most. Guarded by the registry's lock.
	filing *filing
	id     string

	mu    sync.Mutex
	ended bool
	greet bool // greetings still to send (UDP server: before the first reply)
	// sharedDown skips the rules on shared variables for the rest of an input whose shared
	// step failed (shared.go).
	sharedDown bool
	ref        *v1alpha1.ConnectionRef
	peer       netip.AddrPort
	session    string // the session id (operation.session)
	mem        []value.Value
	socks      []socket // open sockets; the last one receives async replies
	// lastInput is when the last input came, on the connector's clock (sinceBegan, in
	// nanoseconds), for interactionTimeout. Written with mu held; atomic because the
	// registry reads it without mu to choose whom capacityPolicy EvictIdlest evicts
	// (registry.idlest), under its own lock, which comes after mu.
	lastInput atomic.Int64
	idle      *time.Timer
	// age ends the conversation at operation.maxConversationAge, however active.
	age *time.Timer
	// async holds the async rules pending and what waits for them; nil until a rule is
	// scheduled or a reply closes its socket under closeAfterReplying.
	async *asyncState
	// amp weighs bytes out against bytes in for the UDP amplification guard
	// (amplification.go); nil until the conversation's first datagram or UDP reply.
	amp *ampWindow
	// ws holds the scratch buffers of the step under way; borrowed from workspaces while mu
	// is held (work) and given back by unlock.
	ws *workspace
	// exprAct is what the conversation's CEL expressions read (expressions.go).
	exprAct *expr.Activation
	// onEnd, if set, is called once the conversation has ended, with mu held: it must not
	// take it.
	onEnd func()
	// stage redirects memory during a shared step (shared.go).
	stage *sharedStage
}

// filing holds a conversation's registry keys beyond its key: alias is a second key, the
// address that started a session-mode conversation given a generated id; source is the
// source counted for maxConnectionsPerPeer.
type filing struct {
	alias  connKey
	source netip.Prefix
}

// asyncState is a conversation's queue of async rules, with the timer of the first, and the
// sockets answered under socket.closeAfterReplying, closed once the async rules pending with
// their replies have run.
type asyncState struct {
	tasks         taskQueue
	timer         *time.Timer
	seq           uint64
	closeWhenDone []socket
}

// workspace holds the scratch buffers a conversation uses while it handles an input, a
// timer or an ending: the replies to send (one message per entry of ends), the indexes in
// ends of those from amplification: Unbounded rules, the rules that fired, the prefilter's
// candidates, the captures a rule's when reads (expressions.go) and a reply being rewritten
// by transform.output. Only a conversation at work needs them, so an idle one holds none:
// they are pooled, borrowed under the conversation's lock and given back when it unlocks.
type workspace struct {
	wire         []byte
	ends         []int
	unbounded    []int
	fired        []*rules.Rule
	cands        rules.Candidates
	exprCaptures []exprCapture
	replyScratch []byte
}

// maxPooledReply bounds the reply buffers a workspace keeps in the pool: one huge reply
// should not hold its buffer in every workspace after it.
const maxPooledReply = 64 << 10

var workspaces = sync.Pool{New: func() any { return new(workspace) }}

// work returns the conversation's workspace, borrowing one if it has none. Called with mu
// held.
func (cv *conversation) work() *workspace {
	if cv.ws == nil {
		cv.ws = workspaces.Get().(*workspace)
	}
	return cv.ws
}

// unlock gives back the workspace, if one was borrowed, and unlocks mu: nothing the
// workspace holds outlives the step that used it.
func (cv *conversation) unlock() {
	if w := cv.ws; w != nil {
		cv.ws = nil
		w.release()
	}
	cv.mu.Unlock()
}

// release empties w (no rule, program or value stays reachable from the pool) and puts it
// back in the pool.
func (w *workspace) release() {
	// The whole backing arrays: a step that fired fewer rules than the one before it left
	// pointers past the length, which would keep old programs reachable from the pool.
	clear(w.fired[:cap(w.fired)])
	clear(w.exprCaptures[:cap(w.exprCaptures)])
	w.wire, w.ends, w.unbounded = w.wire[:0], w.ends[:0], w.unbounded[:0]
	w.fired, w.exprCaptures, w.replyScratch = w.fired[:0], w.exprCaptures[:0], w.replyScratch[:0]
	if cap(w.wire) > maxPooledReply {
		w.wire = nil
	}
	if cap(w.replyScratch) > maxPooledReply {
		w.replyScratch = nil
	}
	workspaces.Put(w)
}

// asyncQueue returns the conversation's async state, made on first use. Called with mu
// held.
func (cv *conversation) asyncQueue() *asyncState {
	if cv.async == nil {
		cv.async = &asyncState{}
	}
	return cv.async
}

// pendingTasks is the number of async rules pending.
func (cv *conversation) pendingTasks() int {
	if cv.async == nil {
		return 0
	}
	return len(cv.async.tasks)
}

// ampWin returns the conversation's amplification window, made on first use. Called with
// mu held.
func (cv *conversation) ampWin() *ampWindow {
	if cv.amp == nil {
		cv.amp = &ampWindow{}
	}
	return cv.amp
}

func (c *Connector) newConversation(g *generation, peer netip.AddrPort, session string) *conversation {
	p := g.prog
	cv := &conversation{
		c: c, gen: g, prog: p, id: c.newConnectionID(), peer: peer, session: session,
		mem: rules.NewValues(p.Connection),
	}
	cv.lastInput.Store(int64(c.sinceBegan()))
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
	if len(cv.prog.OnStart) > 0 {
		from := newCause("the start of the conversation", "")
		for _, sc := range cv.prog.OnStart {
			cv.schedule(sc, from, nil, 0, nil)
		}
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
	defer cv.unlock()
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

// touch records interaction for the idle timeout; now is on the connector's clock
// (sinceBegan).
func (cv *conversation) touch(now time.Duration) {
	cv.lastInput.Store(int64(now))
	if cv.idle != nil {
		cv.idle.Reset(cv.prog.InteractionTimeout)
	}
}

func (cv *conversation) onIdle() {
	cv.mu.Lock()
	defer cv.unlock()
	if cv.ended {
		return
	}
	t := cv.prog.InteractionTimeout
	if left := t - cv.idleFor(); left > 0 {
		cv.idle.Reset(left)
		return
	}
	cv.finish(v1alpha1.ActivityTimedOut, "idle for "+t.String(), cv.prog.Timeout, cv.prog.Ending)
}

// idleFor is how long since the last input (since the start, before any).
func (cv *conversation) idleFor() time.Duration {
	return cv.c.sinceBegan() - time.Duration(cv.lastInput.Load())
}

// evict ends the conversation, idle the longest of those sampled, for a datagram from a new
// source at maxConcurrentConnections (operation.capacityPolicy: EvictIdlest), as its
// interactionTimeout would: timeout then ending, TimedOut. It does nothing to a
// conversation that has ended meanwhile or is busy (its lock held), or when the connector
// stops or is paused (which refuse new sources anyway).
func (cv *conversation) evict() {
	// Not waited for: the UDP read loop calls this, and a conversation busy meanwhile (an
	// async step, a slow shared-memory store) must not stall every source; the caller tries
	// another sample.
	if !cv.mu.TryLock() {
		return
	}
	defer cv.unlock()
	if cv.ended || cv.c.isStopping() || cv.c.paused.Load() {
		return
	}
	cv.c.evictedConversations.Add(1)
	cv.finish(v1alpha1.ActivityTimedOut,
		"evicted for a new peer at maxConcurrentConnections (capacityPolicy EvictIdlest): idle for "+cv.idleFor().Round(time.Millisecond).String(),
		cv.prog.Timeout, cv.prog.Ending)
}

// endByOrder ends the conversation because the connector stops (Ctrl-C, End order).
func (cv *conversation) endByOrder(reason string) {
	cv.mu.Lock()
	defer cv.unlock()
	if !cv.ended {
		cv.finish(v1alpha1.ActivityEnded, reason, cv.prog.Ending)
	}
}

// abort ends the conversation without its ending rule: Close has cut its sockets.
func (cv *conversation) abort() {
	cv.mu.Lock()
	defer cv.unlock()
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
	if cv.async != nil {
		if cv.async.timer != nil {
			cv.async.timer.Stop()
		}
		cv.async = nil
	}
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
	defer cv.unlock()
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
		cv.finish(v1alpha1.ActivityBroken, brokenMessage(err))
	}
}

// brokenMessage is what a Broken activity says of the error that broke its socket. A socket
// call's error says the call and its cause ("read: connection reset by peer"), without the
// network and addresses net.OpError adds, which the activity's connection already names:
// those cost about ten allocations per error, and a peer that resets every connection (as
// scanners do) pays them per connection. Any other error (TLS, framing) is said whole.
func brokenMessage(err error) string {
	if op, ok := errors.AsType[*net.OpError](err); ok {
		if sc, ok := op.Err.(*os.SyscallError); ok {
			return sc.Error()
		}
	}
	return err.Error()
}

// activity starts an activity of this conversation, with room for its evidence (Chain.Number).
func (cv *conversation) activity(typ v1alpha1.ActivityType) *v1alpha1.ActivityRecord {
	r := &struct {
		a  v1alpha1.ActivityRecord
		ev v1alpha1.EvidenceRecord
	}{a: v1alpha1.ActivityRecord{
		Time: nowMicro(), Type: typ, Connection: cv.ref, RulesRef: &cv.prog.Ref, Alert: cv.prog.AlertAll,
	}}
	r.a.Evidence = &r.ev
	return &r.a
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
	// The victims tried for this join: one busy (evict does not wait for it) or ended
	// meanwhile is not the next one's, though it may still be the idlest of a sample.
	var tried [maxEvictionsPerJoin]*conversation
	evictions := 0
	for {
		var source netip.Prefix // only computed when capped: join runs for every datagram
		if p.MaxConnectionsPerPeer > 0 {
			source = sourceOf(peer.Addr(), p.PeerPrefixV6)
		}
		evict := p.EvictIdlest && isUDP && evictions < maxEvictionsPerJoin
		cv, res := c.conns.join(key, p.MaxConnections, source, p.MaxConnectionsPerPeer, evict, tried[:evictions],
			func() *conversation { return c.newConversation(g, peer, session) })
		switch res {
		case overCap:
			if cv != nil {
				// capacityPolicy EvictIdlest: cv is the idlest of a sample. It is ended with
				// no lock of the registry's held (ending takes it), then the key tries again:
				// another datagram may have taken the slot meanwhile, hence the bound.
				cv.evict()
				tried[evictions] = cv
				evictions++
				continue
			}
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
			cv.unlock()
			return cv
		}
		if isUDP {
			// A datagram is not a socket: datagram() points the conversation at its sender.
			return cv
		}
		cv.mu.Lock()
		if !cv.ended && len(cv.socks) >= maxSocketsPerConversation {
			cv.unlock()
			c.reject(peer, p.Transport, fmt.Sprintf("over %d sockets for one logical connection", maxSocketsPerConversation))
			return nil
		}
		ok := cv.attach(s)
		if ok {
			a := cv.activity(v1alpha1.ActivityConnected)
			a.Message = joinMessage("socket joined the live conversation", detail)
			cv.record(a)
		}
		cv.unlock()
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
