// Package connector is Parley's conversation runtime: it serves (or dials) TCP and UDP peers,
// runs a compiled rules.Program against every input, keeps per-connection and global memory,
// schedules async rules, and records every activity in an activity.Register.
//
// Goroutines: Run owns the accept loop (or the UDP read loop, or the client dialers) and one
// reader per stream socket, all tracked by a WaitGroup; timers run conversation callbacks,
// which take the conversation's lock and do nothing once it has ended. Run returns only when
// every goroutine it started has returned.
package connector

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/rules"
	"github.com/parley-dev/parley/rules/value"
)

// stopReason ends the conversations of a connector that stops.
const stopReason = "connector stopping"

// Options configure a Connector beyond its rules.
type Options struct {
	// Name is the connector name reported in activities.
	Name string
	// Register receives every activity. Required.
	Register *activity.Register
	// IP and Port, when set, override operation.ip and operation.port (as an
	// ExternalConnector may). Port 0 picks a free port in server mode.
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
	// UDPAmplification caps the bytes a UDP server sends per byte received until the peer
	// has sent a second datagram. Default 3 (as QUIC's anti-amplification limit).
	UDPAmplification int
	// TLS is the key material for rules with operation.tls.enabled.
	TLS *TLS
}

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

	runCtx context.Context
	wg     sync.WaitGroup
	ready  chan struct{}
	addr   net.Addr

	rejected    atomic.Uint64
	rateLimited atomic.Uint64
	// waiting counts session-mode sockets that have not sent their first input yet.
	waiting atomic.Int64
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
	c := &Connector{opts: opts, reg: opts.Register, ready: make(chan struct{}), globals: map[string]*globalSlot{}}
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

// Update makes new conversations use prog; live ones finish on the rules they started with.
// Global variables keep their values where name and type are unchanged. Network settings
// (mode, transport, address) take effect at the next Run.
func (c *Connector) Update(prog *rules.Program) { c.current.Store(c.bind(prog)) }

// Pause refuses new connections (recorded as Rejected) and keeps live ones.
func (c *Connector) Pause() { c.paused.Store(true) }

// Resume accepts new connections again.
func (c *Connector) Resume() { c.paused.Store(false) }

// Ready is closed once the connector serves (server) or has started dialing (client).
func (c *Connector) Ready() <-chan struct{} { return c.ready }

// Addr is the bound address in server mode, valid after Ready.
func (c *Connector) Addr() net.Addr { return c.addr }

// Active is the number of live logical connections.
func (c *Connector) Active() int { return c.conns.len() }

// Stats are a connector's counters since it started.
type Stats struct {
	// Active logical connections now; Total started so far.
	Active int
	Total  uint64
	// Rejected peers (over a cap, paused, too many sockets).
	Rejected uint64
	// RateLimited UDP datagrams dropped by the per-peer limit (not recorded one by one).
	RateLimited uint64
}

// Stats returns the counters.
func (c *Connector) Stats() Stats {
	return Stats{Active: c.conns.len(), Total: c.nextID.Load(), Rejected: c.rejected.Load(), RateLimited: c.rateLimited.Load()}
}

// Run serves until ctx is cancelled (server) or every conversation has ended (client). On
// cancel it ends live conversations gracefully: the ending rule is sent, sockets close, and
// their activities are recorded before Run returns. The register is not closed.
func (c *Connector) Run(ctx context.Context) error {
	g := c.current.Load()
	p := g.prog
	if err := c.checkTLS(p); err != nil {
		return err
	}
	if p.ExecutionDelay > 0 {
		t := time.NewTimer(p.ExecutionDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
	c.runCtx = ctx
	var err error
	switch {
	case p.Mode == v1alpha1.ModeClient:
		err = c.runClient(ctx, p)
	case p.Transport == v1alpha1.TransportUDP && p.TLS.Enabled:
		err = c.runDTLSServer(ctx, p)
	case p.Transport == v1alpha1.TransportUDP:
		err = c.runUDPServer(ctx, p)
	default:
		err = c.runTCPServer(ctx, p)
	}
	return err
}

// started records ConnectorStarted and signals Ready.
func (c *Connector) started(p *rules.Program, msg string) {
	c.record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityConnectorStarted, RulesRef: &p.Ref, Message: msg})
	close(c.ready)
}

// stop ends every live conversation with reason, waits for the socket goroutines, and
// records ConnectorStopped.
func (c *Connector) stop(reason string, closeTransport func()) {
	for _, cv := range c.conns.drain() {
		cv.endByOrder(reason)
	}
	if closeTransport != nil {
		closeTransport()
	}
	c.wg.Wait()
	c.record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityConnectorStopped, Message: reason})
}

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

// keyOf is the logical-connection key of a peer: its IP, plus its port with identifyByPort.
func keyOf(p *rules.Program, peer netip.AddrPort) connKey {
	if p.IdentifyByPort {
		return addrKey(peer)
	}
	return addrKey(netip.AddrPortFrom(peer.Addr(), 0))
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
