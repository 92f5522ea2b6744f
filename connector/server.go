// Package connector is Parley's conversation runtime: it serves (or dials) TCP and UDP peers,
// runs a compiled rules.Program against every input, keeps per-connection and global memory,
// schedules async rules, and records every activity in an activity.Register.
//
// A Connector is used as net/http's Server is. In server mode, ListenAndServe listens where
// the rules say (operation.ip, operation.port, transport and TLS, with the Options'
// overrides), or Serve takes a net.Listener and ServePacket a UDP net.PacketConn; in client
// mode, RunClients dials the rules' conversations. Shutdown ends gracefully: it stops
// accepting, gives every live conversation its ending rule, and waits for them. Close stops
// at once: it closes every socket, sends no ending, and stops every timer. After either, the
// serving calls return ErrServerClosed: a connector serves once, and a new Connector serves
// again. Run does it all for a caller that holds a context.
//
// Goroutines: the serving calls run their accept or read loop on the caller's goroutine. The
// connector starts one goroutine per accepted connection (its handshake and greeting, then
// its reader) and per client conversation, and its timers (idle timeouts, async rules) run
// conversation callbacks, which take the conversation's lock and do nothing once it has
// ended. On Linux, a plain TCP connection's reader starts only with its first input: until
// then the connection waits in the connector's idle waiter, one goroutine for all of them
// (idlewait_linux.go). Shutdown, unless its context ends first, and Close return only when
// every one of them has returned.
package connector

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/connector/sharedmemory"
	"github.com/parley-dev/parley/rules"
	"github.com/parley-dev/parley/rules/value"
)

// ErrServerClosed is returned by the serving calls (Serve, ServePacket, ListenAndServe,
// RunClients) once Shutdown or Close has been called, and by Run on a connector that had
// already stopped.
var ErrServerClosed = errors.New("connector: closed")

// Reasons recorded as a stopping connector ends its conversations.
const (
	// stopReason: Shutdown sent their ending rule.
	stopReason = "connector stopping"
	// closeReason: Close cut them.
	closeReason = "connector closed: conversation cut without its ending"
)

// Options configure a Connector beyond its rules.
type Options struct {
	// Name is the connector name reported in activities.
	Name string
	// Register receives every activity. Required.
	Register *activity.Register
	// IP and Port, when set, override operation.ip and operation.port where the connector
	// listens or dials (`parley run --ip --port`). Port 0 picks a free port in server mode.
	// A connector pod gets its ExternalConnector's overrides folded into the rules instead
	// (rules.CompileEffective), as the controller validated them.
	IP   *string
	Port *int
	// WriteTimeout bounds each write to a peer that does not read. Default 10s.
	WriteTimeout time.Duration
	// DialTimeout bounds each client-mode dial. Default 10s.
	DialTimeout time.Duration
	// UDPPeerRate limits datagrams per second accepted from one peer IP; UDPPeerBurst is the
	// bucket size. Zero values mean the defaults, 100/s and 200; a negative rate, no limit.
	UDPPeerRate  float64
	UDPPeerBurst int
	// UDPAmplification caps the bytes a UDP server sends a peer per byte received from it
	// over the last AmplificationWindow. Default 3 (as QUIC's anti-amplification limit).
	UDPAmplification int
	// RefusalSummaryInterval is how often refused UDP datagrams and DTLS hellos are
	// summarised in one Rejected activity per reason. Default DefaultRefusalSummaryInterval.
	RefusalSummaryInterval time.Duration
	// DTLSCookieTimeout is how long a DTLS source has to return the HelloVerifyRequest
	// cookie before its handshake is given up (docs/hardening.md §1). Default
	// DTLSCookieTimeout.
	DTLSCookieTimeout time.Duration
	// TLS is the key material for rules with operation.tls.enabled.
	TLS *TLS
	// SharedMemory holds the shared variables (memory.shared). Connectors handed the same
	// store share them; nil gives the connector an in-process store of its own.
	SharedMemory sharedmemory.Store
	// SharedStepTimeout bounds each shared step (and each read of shared memory), so a
	// slow store never holds a conversation long. Default DefaultSharedStepTimeout.
	SharedStepTimeout time.Duration
	// FirstInputWait is how long the goroutine that greeted a plain TCP connection reads it
	// for its first input before handing it to the idle waiter, which holds a silent
	// connection without a goroutine (idlewait_linux.go). Default DefaultFirstInputWait;
	// negative, at once.
	FirstInputWait time.Duration
}

// DefaultFirstInputWait is Options.FirstInputWait's default. A client that speaks first
// once greeted does so within its round trip: on a local network, and on loopback under
// load, well within it. Waiting that long costs a runtime timer; handing the connection to
// the idle waiter costs an epoll registration, a wake of the waiter's goroutine and a
// handoff to a reader's (a few system calls per connection, 3% of the CPU under
// connect-per-request). A silent connection holds its goroutine this long, and the
// goroutines so held are this long's share of the connection rate: 100 at 10,000
// connections a second.
const DefaultFirstInputWait = 10 * time.Millisecond

// Connector runs one conversation program.
type Connector struct {
	opts Options
	reg  *activity.Register

	current atomic.Pointer[generation]
	paused  atomic.Bool
	// globalMu guards every global variable slot; slots are shared by all generations.
	globalMu sync.Mutex
	globals  map[string]*globalSlot
	conns    registry
	nextID   atomic.Uint64

	// quit is closed when Shutdown or Close begins: loops return, dials, handshakes and
	// retry pauses give up.
	quit chan struct{}
	// stopCtx is cancelled with quit, for the contexts of dials and handshakes.
	stopCtx    context.Context
	cancelStop context.CancelFunc
	// ready is closed once the connector serves or dials.
	ready chan struct{}
	// serving counts the serving calls under way, on their callers' goroutines; tasks, the
	// goroutines the connector starts itself. Once stopping, neither takes new members.
	serving, tasks group
	// hardStop is set by Close: sockets that end from then on were cut by it.
	hardStop atomic.Bool
	// retryWait pauses before a retry after a temporary accept or read error, returning
	// early if quit closes; tests replace it.
	retryWait func(d time.Duration, quit <-chan struct{})

	mu        sync.Mutex // guards the fields below
	stopping  bool       // Shutdown or Close has begun (or client conversations all ended)
	reason    string     // recorded in ConnectorStopped
	listeners map[net.Listener]struct{}
	packets   map[packetConn]struct{}
	// udpDropsClosed is what the kernel dropped from UDP server sockets now closed.
	udpDropsClosed uint64
	// sockets are the open sockets and what is known of each: Shutdown closes those no
	// conversation holds yet (in their handshake or waiting for their first input), Close
	// every one.
	sockets map[io.Closer]socketState
	// socketSources is the source of each tracked socket counted in peers.
	socketSources map[io.Closer]netip.Prefix
	// handshakes counts accepted sockets in their TLS or DTLS handshake, which count against
	// maxConcurrentConnections; peers the accepted sockets of each source when
	// maxConnectionsPerPeer is set (peers.go).
	handshakes int
	peers      map[netip.Prefix]int
	addr       net.Addr
	// didStart and didStop say ConnectorStarted and ConnectorStopped were recorded.
	didStart, didStop bool

	rejected    atomic.Uint64
	rateLimited atomic.Uint64
	// unverified counts DTLS handshakes given up before their cookie came back; refusals
	// gathers the refusals summarised rather than recorded one by one (refusals.go).
	unverified atomic.Uint64
	// evicted, backlogDropped and bufferDropped count DTLS handshakes evicted for newer
	// hellos, hellos dropped from the listener's full backlog, and datagrams dropped from a
	// source's full buffer (dtls.go).
	// overflowDropped, datagrams the kernel dropped from a DTLS listener's full socket.
	evicted, backlogDropped, bufferDropped, overflowDropped atomic.Uint64
	// evictedConversations counts the conversations ended for a new source by
	// capacityPolicy EvictIdlest.
	evictedConversations atomic.Uint64
	refusals             refusals
	// ampHeldBytes and ampHeldMessages count what the UDP amplification guard held back;
	// began is the origin of its windows' clock; ampSlotForTests, when not zero, is the
	// windows' slot instead (set by tests, export_test.go, to slide them without waiting).
	ampHeldBytes, ampHeldMessages atomic.Uint64
	began                         time.Time
	ampSlotForTests               atomic.Int64
	// waiting counts session-mode sockets that have not sent their first input yet.
	waiting atomic.Int64
	// idle holds plain TCP connections until their first input without a goroutine each
	// (idlewait_linux.go).
	idle idleWaiter

	shared sharedmemory.Store
	// sharedErrors counts the shared steps the store failed; sharedLost is set from a
	// failure to the next success.
	sharedErrors atomic.Uint64
	sharedLost   atomic.Bool
	// target is where a client dials when startWhen takes it from shared memory.
	target atomic.Pointer[startTarget]
}

// generation is a program with its global variables bound to the connector's slots.
type generation struct {
	prog   *rules.Program
	global []*globalSlot // by rules.VarRef.Index
}

// globalSlot holds one global variable's value, guarded by Connector.globalMu.
type globalSlot struct {
	kind value.Kind
	v    value.Value
}

// New returns a connector for prog.
func New(prog *rules.Program, opts Options) (*Connector, error) {
	if opts.Register == nil {
		return nil, errors.New("connector: Options.Register is required")
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 10 * time.Second
	}
	if opts.UDPPeerRate == 0 && opts.UDPPeerBurst == 0 {
		opts.UDPPeerRate, opts.UDPPeerBurst = 100, 200
	}
	if opts.UDPAmplification <= 0 {
		opts.UDPAmplification = 3
	}
	if opts.RefusalSummaryInterval <= 0 {
		opts.RefusalSummaryInterval = DefaultRefusalSummaryInterval
	}
	if opts.DTLSCookieTimeout <= 0 {
		opts.DTLSCookieTimeout = DTLSCookieTimeout
	}
	if opts.SharedStepTimeout <= 0 {
		opts.SharedStepTimeout = DefaultSharedStepTimeout
	}
	if opts.FirstInputWait == 0 {
		opts.FirstInputWait = DefaultFirstInputWait
	}
	if opts.SharedMemory == nil {
		opts.SharedMemory = sharedmemory.NewMemory()
	}
	c := &Connector{
		opts: opts, reg: opts.Register, globals: map[string]*globalSlot{},
		quit: make(chan struct{}), ready: make(chan struct{}), retryWait: pause, shared: opts.SharedMemory,
		listeners: map[net.Listener]struct{}{}, packets: map[packetConn]struct{}{}, sockets: map[io.Closer]socketState{},
		socketSources: map[io.Closer]netip.Prefix{}, peers: map[netip.Prefix]int{}, began: time.Now(),
	}
	c.idle.c = c
	c.stopCtx, c.cancelStop = context.WithCancel(context.Background())
	c.serving.init()
	c.tasks.init()
	c.conns.init()
	c.current.Store(c.bind(prog))
	return c, nil
}

// bind lays out prog's global variables over the connector's slots: a variable keeps its
// slot (and value) across rules updates while its name and type stay the same, so live
// conversations on older rules and new ones share it.
func (c *Connector) bind(prog *rules.Program) *generation {
	g := &generation{prog: prog, global: make([]*globalSlot, len(prog.Global))}
	c.globalMu.Lock()
	defer c.globalMu.Unlock()
	for i, v := range prog.Global {
		slot := c.globals[v.Name]
		if slot == nil || slot.kind != v.Kind {
			slot = &globalSlot{kind: v.Kind, v: v.Initial()}
			c.globals[v.Name] = slot
		}
		g.global[i] = slot
	}
	return g
}

// Network is what a serving Connector cannot change: where and how it listens or dials.
// Update keeps a connector's own; a program whose Network differs needs a new Connector.
type Network struct {
	Mode      v1alpha1.Mode
	Transport v1alpha1.Transport
	IP        string
	Port      int
	IPv6      bool
	TLS       v1alpha1.TLS
}

// NetworkOf is the Network a program asks for.
func NetworkOf(p *rules.Program) Network {
	return Network{Mode: p.Mode, Transport: p.Transport, IP: p.IP, Port: p.Port, IPv6: p.IPv6, TLS: p.TLS}
}

// Changed names the first setting of n that differs in o, as the rules spell it
// ("operation.port"), or "" when none does.
func (n Network) Changed(o Network) string {
	switch {
	case n.Mode != o.Mode:
		return "operation.mode"
	case n.Transport != o.Transport:
		return "operation.transport"
	case n.IP != o.IP:
		return "operation.ip"
	case n.Port != o.Port:
		return "operation.port"
	case n.IPv6 != o.IPv6:
		return "operation.ipv6"
	case n.TLS != o.TLS:
		return "operation.tls"
	}
	return ""
}

// Update makes new conversations use prog; live ones finish on the rules they started with.
// Global variables keep their values where name and type are unchanged. Network settings
// (mode, transport, address, TLS) are read when serving starts: a connector that serves
// keeps its own, and new ones need a new Connector.
func (c *Connector) Update(prog *rules.Program) {
	c.current.Store(c.bind(prog))
	c.initShared(prog, false) // new shared variables get their defaults; Overwrite is for the start
}

// Pause refuses new connections (recorded as Rejected) and keeps live ones.
func (c *Connector) Pause() { c.paused.Store(true) }

// Resume accepts new connections again.
func (c *Connector) Resume() { c.paused.Store(false) }

// Ready is closed once the connector serves (server) or has started dialing (client).
func (c *Connector) Ready() <-chan struct{} { return c.ready }

// Addr is the bound address in server mode (of the first listener served), valid after
// Ready; nil before, and in client mode.
func (c *Connector) Addr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// Active is the number of live logical connections.
func (c *Connector) Active() int { return c.conns.len() }

// Stats are a connector's counters since it started.
type Stats struct {
	// Active logical connections now; Total started so far.
	Active int
	// Handshakes are the TLS and DTLS handshakes under way now.
	Handshakes int
	Total      uint64
	// Rejected peers (over a cap, paused, too many sockets).
	Rejected uint64
	// Rejected counts every refused UDP datagram and DTLS hello too; those are summarised
	// (one Rejected activity per reason every Options.RefusalSummaryInterval), not recorded one by one.
	// RateLimited UDP datagrams dropped by the per-peer limit (summarised too).
	RateLimited uint64
	// DTLSUnverified counts DTLS handshakes given up because the peer never returned the
	// cookie within Options.DTLSCookieTimeout: spoofed or lost hellos (summarised).
	DTLSUnverified uint64
	// DTLSEvicted counts DTLS handshakes evicted, before their cookie came back, for a newer
	// hello at maxConcurrentConnections (the oldest unverified first); DTLSBacklogDropped,
	// hellos dropped by the listener before any handshake, the oldest of more than 128 new
	// sources not accepted yet; DTLSBufferDropped, datagrams dropped because their source's
	// unread datagrams were over its buffer (16 KiB before the cookie, 256 KiB after).
	// DTLSSocketDropped, datagrams the kernel dropped from the DTLS listener's full receive
	// buffer (Linux only; seen with the next datagram read). All summarised, and none of
	// them in Rejected.
	DTLSEvicted, DTLSBacklogDropped, DTLSBufferDropped, DTLSSocketDropped uint64
	// UDPSocketDropped counts the datagrams the kernel dropped from a UDP server's full
	// receive buffer before the connector read them (Linux only): a flood faster than the
	// connector, real clients' datagrams among it (docs/hardening.md §1).
	UDPSocketDropped uint64
	// Evicted counts the conversations a UDP server ended for a new source at
	// maxConcurrentConnections, under capacityPolicy EvictIdlest (each recorded TimedOut).
	Evicted uint64
	// AmplificationHeldBytes and AmplificationHeldMessages: replies the UDP amplification
	// guard did not send (each noted on its activity too).
	AmplificationHeldBytes, AmplificationHeldMessages uint64
	// SharedMemoryErrors counts the shared steps and reads the store failed.
	SharedMemoryErrors uint64
}

// Stats returns the counters.
func (c *Connector) Stats() Stats {
	c.mu.Lock()
	handshakes, udpDropped := c.handshakes, c.udpSocketDropped()
	c.mu.Unlock()
	return Stats{Handshakes: handshakes, UDPSocketDropped: udpDropped, Active: c.conns.len(), Total: c.nextID.Load(), Rejected: c.rejected.Load(), RateLimited: c.rateLimited.Load(),
		DTLSUnverified: c.unverified.Load(), DTLSEvicted: c.evicted.Load(), DTLSBacklogDropped: c.backlogDropped.Load(), DTLSBufferDropped: c.bufferDropped.Load(),
		DTLSSocketDropped: c.overflowDropped.Load(), Evicted: c.evictedConversations.Load(),
		AmplificationHeldBytes: c.ampHeldBytes.Load(), AmplificationHeldMessages: c.ampHeldMessages.Load(),
		SharedMemoryErrors: c.sharedErrors.Load()}
}

// Run serves (ListenAndServe) or dials (RunClients), as the rules' mode says, until ctx is
// done, then shuts down without a deadline: live conversations get their ending rule, their
// sockets close, and their activities are recorded before Run returns. A client-mode Run
// returns by itself once every conversation has ended. Run returns nil when ctx ended it,
// the error that ended serving otherwise, and ErrServerClosed if the connector had stopped
// (it serves once). The register is not closed.
func (c *Connector) Run(ctx context.Context) error {
	served := make(chan error, 1)
	go func() {
		if c.current.Load().prog.Mode == v1alpha1.ModeClient {
			served <- c.RunClients()
		} else {
			served <- c.ListenAndServe()
		}
	}()
	select {
	case err := <-served:
		// Failed, or stopped by someone else, or client conversations all ended: end what
		// is left (nothing, in the last two cases).
		_ = c.Shutdown(context.Background())
		return err
	case <-ctx.Done():
	}
	_ = c.Shutdown(context.Background())
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		return err
	}
	return nil
}

// ListenAndServe listens where the rules say (TCP, UDP, or DTLS with operation.tls on UDP,
// on operation.ip and operation.port unless Options override them) once their
// executionDelay has passed, and serves until Shutdown or Close (then it returns
// ErrServerClosed) or a listener error that is not temporary.
func (c *Connector) ListenAndServe() error {
	p := c.current.Load().prog
	if p.Mode == v1alpha1.ModeClient {
		return errors.New("connector: the rules are in client mode: use RunClients")
	}
	if err := c.checkTLS(p); err != nil {
		return err
	}
	if !c.serving.add() {
		return ErrServerClosed
	}
	defer c.serving.done()
	if !c.sleep(p.ExecutionDelay) {
		return ErrServerClosed
	}
	switch {
	case p.Transport == v1alpha1.TransportUDP && p.TLS.Enabled:
		ln, err := c.listenDTLS(p)
		if err != nil {
			return err
		}
		return c.serve(ln, p)
	case p.Transport == v1alpha1.TransportUDP:
		pc, err := c.listenUDP(p)
		if err != nil {
			return err
		}
		return c.servePacket(pc, p)
	default:
		ln, err := c.listenTCP(p)
		if err != nil {
			return err
		}
		return c.serve(ln, p)
	}
}

// Shutdown stops the connector gracefully. It closes the listeners (and sockets that no
// conversation holds yet: in their handshake, or waiting for a first input that names their
// session), ends every live conversation as its rules say (the ending rule is sent, then the
// sockets close), closes the UDP sockets once those endings are sent, and waits until every
// goroutine of the connector has returned. If ctx ends first, Shutdown returns its error and
// the connector goes on stopping; Close then stops it at once. ConnectorStopped is recorded
// when it has stopped, whoever sees it first.
func (c *Connector) Shutdown(ctx context.Context) error {
	if c.beginStop(stopReason) {
		live := c.conns.drain()
		c.tasks.goFunc(func() { c.endAll(live) })
	}
	for _, idle := range []<-chan struct{}{c.tasks.idle, c.serving.idle} {
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.recordStopped()
	return nil
}

// Close stops the connector at once: it closes every listener and socket, ends every live
// conversation without its ending rule (recorded as Ended, cut by Close), stops their timers,
// and returns once every goroutine of the connector has returned. It may follow a Shutdown
// whose context ended.
func (c *Connector) Close() error {
	c.beginStop(stopReason)
	c.mu.Lock()
	c.hardStop.Store(true) // under mu: no socket is tracked after this
	closers := c.retirePackets()
	for s := range c.sockets {
		closers = append(closers, s)
	}
	c.mu.Unlock()
	for _, s := range closers {
		_ = s.Close()
	}
	// The sockets waiting for a first input have no reader to see them closed: start them.
	c.idle.stop()
	// Writes blocked on the sockets have failed: conversation locks come free.
	for _, cv := range c.conns.drain() {
		cv.abort()
	}
	c.tasks.close()
	<-c.tasks.idle
	<-c.serving.idle
	c.recordStopped()
	return nil
}

// beginStop marks the connector stopping, with the reason ConnectorStopped will give: no
// serving call starts from now on, loops return, dials and handshakes give up, listeners and
// the sockets no conversation holds close. False if it was stopping already.
func (c *Connector) beginStop(reason string) bool {
	c.mu.Lock()
	if c.stopping {
		c.mu.Unlock()
		return false
	}
	c.stopping, c.reason = true, reason
	close(c.quit)
	c.cancelStop()
	c.serving.close()
	// Nothing is tracked from now on: close outside the lock, which the loops take.
	closers := make([]io.Closer, 0, len(c.listeners))
	for ln := range c.listeners {
		closers = append(closers, ln)
	}
	for s, st := range c.sockets {
		if !st.held {
			closers = append(closers, s)
		}
	}
	c.mu.Unlock()
	for _, s := range closers {
		_ = s.Close()
	}
	return true
}

// endAll gives the conversations live when Shutdown began their ending, all at once (a peer
// that does not read holds up its own ending only), then closes the UDP sockets, which the
// endings were sent on, and takes no new goroutine.
func (c *Connector) endAll(live []*conversation) {
	var wg sync.WaitGroup
	for _, cv := range live {
		wg.Go(func() { cv.endByOrder(stopReason) })
	}
	wg.Wait()
	c.idle.stop() // every parked socket was closed by its ending, and woken; none parks now
	c.mu.Lock()
	packets := c.retirePackets()
	c.mu.Unlock()
	for _, pc := range packets {
		_ = pc.Close()
	}
	c.tasks.close()
}

// isStopping says whether Shutdown or Close has begun.
func (c *Connector) isStopping() bool {
	select {
	case <-c.quit:
		return true
	default:
		return false
	}
}

// sleep waits d, or until the connector stops; false if it stops.
func (c *Connector) sleep(d time.Duration) bool {
	if d > 0 {
		pause(d, c.quit)
	}
	return !c.isStopping()
}

// pause waits d, or until quit closes.
func pause(d time.Duration, quit <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-quit:
	}
}

// started records ConnectorStarted and signals Ready; addr, if set, is what Addr returns
// unless a listener came first. False (nothing recorded) if the connector is stopping.
func (c *Connector) started(p *rules.Program, addr net.Addr, msg string) bool {
	c.mu.Lock()
	if c.stopping {
		c.mu.Unlock()
		return false
	}
	if c.addr == nil {
		c.addr = addr
	}
	first := !c.didStart
	c.didStart = true
	c.mu.Unlock()
	if first {
		c.initShared(p, p.SharedOverwrite)
	}
	c.record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityConnectorStarted, RulesRef: &p.Ref, Message: msg})
	c.mu.Lock()
	select {
	case <-c.ready:
	default:
		close(c.ready)
	}
	c.mu.Unlock()
	return true
}

// recordStopped records ConnectorStopped once, if ConnectorStarted was.
func (c *Connector) recordStopped() {
	c.mu.Lock()
	if !c.didStart || c.didStop {
		c.mu.Unlock()
		return
	}
	c.didStop = true
	reason := c.reason
	c.mu.Unlock()
	c.summariseRefusals() // the refusals since the last summary, counted before the end
	if d := c.reg.Stats().Dropped; d > 0 {
		// Said here because a sink that reads only this record should still learn of them.
		reason += "; " + strconv.FormatUint(d, 10) + " activities dropped before this one (activity buffer full by count or bytes)"
	}
	c.record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityConnectorStopped, Message: reason})
}

// trackListener registers a listener for Shutdown and Close to close; false (and ln closed)
// if the connector is stopping.
func (c *Connector) trackListener(ln net.Listener) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		_ = ln.Close()
		return false
	}
	c.listeners[ln] = struct{}{}
	return true
}

func (c *Connector) untrackListener(ln net.Listener) {
	c.mu.Lock()
	delete(c.listeners, ln)
	c.mu.Unlock()
}

// trackPacket registers a UDP socket served, as trackListener.
func (c *Connector) trackPacket(pc packetConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		_ = pc.Close()
		return false
	}
	c.packets[pc] = struct{}{}
	return true
}

func (c *Connector) untrackPacket(pc packetConn) {
	c.mu.Lock()
	if _, ok := c.packets[pc]; ok { // not retired by a stop
		c.retirePacket(pc)
	}
	c.mu.Unlock()
}

// retirePacket stops tracking pc, keeping what the kernel dropped from it: read before
// its Close, as the count goes with the socket. Called with mu held.
func (c *Connector) retirePacket(pc packetConn) {
	c.udpDropsClosed += socketDrops(pc)
	delete(c.packets, pc)
}

// retirePackets retires every UDP socket served and returns them, for the stop to close.
// Called with mu held.
func (c *Connector) retirePackets() []io.Closer {
	packets := make([]io.Closer, 0, len(c.packets))
	for pc := range c.packets {
		packets = append(packets, pc)
		c.retirePacket(pc)
	}
	return packets
}

// udpSocketDropped is what the kernel dropped from the UDP servers' full receive buffers:
// the sockets served now, and those closed. Called with mu held.
func (c *Connector) udpSocketDropped() uint64 {
	n := c.udpDropsClosed
	for pc := range c.packets {
		n += socketDrops(pc)
	}
	return n
}

// trackSocket registers an accepted or dialled socket (the transport's own, under any TLS)
// for Shutdown and Close to close; held says a conversation holds it already. A stopping
// connector takes no new socket: it is closed, and the result is false.
func (c *Connector) trackSocket(s io.Closer, held bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		_ = s.Close()
		return false
	}
	c.sockets[s] = socketState{held: held}
	return true
}

// holdSocket marks a tracked socket as held by a conversation.
func (c *Connector) holdSocket(s io.Closer) {
	c.mu.Lock()
	if st, ok := c.sockets[s]; ok {
		st.held = true
		c.sockets[s] = st
	}
	c.mu.Unlock()
}

func (c *Connector) untrackSocket(s io.Closer) {
	c.mu.Lock()
	if st, ok := c.sockets[s]; ok {
		c.release(s, st)
		delete(c.sockets, s)
	}
	c.mu.Unlock()
}

// stopContext is done once the connector is stopping, for dials and handshakes to give up.
// It is a context of the standard library's, not a wrapper of quit: a context derived from
// another implementation would need a goroutine to watch it, one per handshake and dial.
func (c *Connector) stopContext() context.Context { return c.stopCtx }

func (c *Connector) record(a *v1alpha1.ActivityRecord) {
	if a.Time.IsZero() {
		a.Time.Time = time.Now()
	}
	a.Connector = c.opts.Name
	// alertAll flags every activity, including those of no conversation (refusals, failed
	// handshakes, start and stop); conversations set it from their own rules.
	if a.Connection == nil || a.Connection.ID == "" {
		a.Alert = a.Alert || c.current.Load().prog.AlertAll
	}
	c.reg.Record(a)
}

// address is host:port for the program with the options' overrides.
func (c *Connector) address(p *rules.Program) (network, address string) {
	ip, port := p.IP, p.Port
	if c.opts.IP != nil {
		ip = *c.opts.IP
	}
	if c.opts.Port != nil {
		port = *c.opts.Port
	}
	if p.Mode == v1alpha1.ModeClient {
		ip, port = c.targetAddress(ip, port)
	}
	network = "tcp"
	if p.Transport == v1alpha1.TransportUDP {
		network = "udp"
	}
	if p.IPv6 {
		network += "6"
	} else {
		network += "4"
	}
	return network, net.JoinHostPort(ip, strconv.Itoa(port))
}

// sinceBegan is the time since the connector began, on the monotonic clock: a conversation
// keeps its last input's time in 8 bytes rather than a time.Time's 24.
func (c *Connector) sinceBegan() time.Duration { return time.Since(c.began) } // one clock reading, time.Now's two

// sinceBeganAt is sinceBegan at now, a time.Now the caller read for something else too.
func (c *Connector) sinceBeganAt(now time.Time) time.Duration { return now.Sub(c.began) }

// newConnectionID numbers logical connections c-000001, c-000002, ...
func (c *Connector) newConnectionID() string {
	var b [24]byte
	digits := strconv.AppendUint(b[:0], c.nextID.Add(1), 10)
	out := append(b[len(digits):len(digits)], 'c', '-')
	for range 6 - len(digits) {
		out = append(out, '0')
	}
	return string(append(out, digits...))
}

// keyOf is the logical-connection key of a peer: its IP, and its port unless identifyBy: IP.
func keyOf(p *rules.Program, peer netip.AddrPort) connKey {
	if p.IdentifyByAddress {
		return addrKey(peer)
	}
	return addrKey(netip.AddrPortFrom(peer.Addr(), 0))
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
