// Package pod is the process of a connector pod, which `parley connector` runs: it dials
// the engine (connector/uplink), waits for the ExternalConnector's rules, runs a
// connector.Connector on them, follows the engine's Configs and orders (END, PAUSE, RESUME;
// the uplink obeys DISCONNECT itself), streams every activity to the engine, and ends in
// order: conversations get their ending, activities are flushed, the engine hears Bye.
package pod

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/connector/metrics"
	"github.com/parley-dev/parley/connector/sharedmemory"
	"github.com/parley-dev/parley/connector/uplink"
	"github.com/parley-dev/parley/rules"
)

// Key names in the connector's TLS Secrets (kubernetes.io/tls, as cert-manager writes them).
const (
	TLSCertFile = "tls.crt"
	TLSKeyFile  = "tls.key"
	CAFile      = "ca.crt"
)

// Defaults of the Options left zero.
const (
	DefaultConfigTimeout = 2 * time.Minute
	DefaultEndTimeout    = 25 * time.Second
)

// Options are the settings of the pod process. `parley connector` binds them to its flags,
// named in the comments, and to the environment the operator's pods set.
type Options struct {
	// EngineAddress is the engine's host:port (--engine-address). Required.
	EngineAddress string
	// EngineServerName is the name the engine's certificate must carry
	// (--engine-server-name); default: the host of EngineAddress.
	EngineServerName string
	// Connector and Namespace name the ExternalConnector this pod serves (--connector,
	// --namespace). Required.
	Connector, Namespace string
	// Pod is the pod name reported to the engine (--pod).
	Pod string
	// TokenFile holds the engine token and EngineCAFile the PEM CA the engine's certificate
	// must chain to (--engine-token-file, --engine-ca-file); both are read at every dial.
	TokenFile, EngineCAFile string
	// TLSDir is the directory of the connector's TLS Secret (TLSCertFile, TLSKeyFile,
	// optional CAFile) and TLSClientCADir that of the client CA Secret (CAFile), for rules
	// with operation.tls (--tls-dir, --tls-client-ca-dir).
	TLSDir, TLSClientCADir string
	// ConfigTimeout bounds the wait for a first usable Config (--config-timeout); Run fails
	// after it. Default DefaultConfigTimeout.
	ConfigTimeout time.Duration
	// EndTimeout bounds a graceful end: the conversations' endings, the activity flush and
	// Bye (--end-timeout). Conversations still live when it expires are cut (Close).
	// Default DefaultEndTimeout.
	EndTimeout time.Duration
	// HoldAfterEnd keeps a server-mode process alive after the engine's End order, not
	// serving and not ready, until ctx is done (--hold-after-end): a Deployment restarts a
	// container that exits, even with 0, and the restarted one would find its connector
	// gone. A client-mode process always exits: its Job completes.
	HoldAfterEnd bool
	// MetricsAddress is where the Prometheus metrics endpoint listens
	// (--metrics-bind-address); "" or "0" disables it.
	MetricsAddress string
	// ActivityBuffer is how many activities may wait for the engine client before new ones
	// are dropped and counted (--activity-buffer); ReplayBuffer, how many are kept until the
	// engine acknowledges them (--replay-buffer). Zero means the packages' defaults.
	ActivityBuffer, ReplayBuffer int
	// ActivityBudget and ReplayBudget bound the same by bytes (--activity-budget,
	// --replay-budget): what a peer streaming large inputs can make the pod hold. Zero means
	// the packages' defaults (activity.DefaultBudget, uplink.DefaultReplayBytes).
	ActivityBudget, ReplayBudget int64
	// SharedMemoryDir is where the connector's engine Secret is mounted, which names the
	// Redis or Valkey store of shared variables when the operator has one
	// (--shared-memory-dir); "" or no store there: shared variables stay in the process.
	SharedMemoryDir string
	// SharedMemoryCheck is how often the store is checked (--shared-memory-check).
	// Default DefaultSharedMemoryCheck.
	SharedMemoryCheck time.Duration
	// SharedStepTimeout bounds each shared step (--shared-memory-timeout); default the
	// connector's.
	SharedStepTimeout time.Duration
	// Version is said to the engine in Hello.
	Version string
	// Logger hears what the process does.
	Logger logr.Logger
}

func (o *Options) validate() error {
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"--engine-address", o.EngineAddress}, {"--connector", o.Connector}, {"--namespace", o.Namespace},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s required (the operator's pods set them through the environment)", strings.Join(missing, ", "))
	}
	host, _, err := net.SplitHostPort(o.EngineAddress)
	if err != nil {
		return fmt.Errorf("--engine-address %q: %w", o.EngineAddress, err)
	}
	if o.ConfigTimeout < 0 || o.EndTimeout < 0 {
		return errors.New("--config-timeout and --end-timeout must be positive")
	}
	if o.ConfigTimeout == 0 {
		o.ConfigTimeout = DefaultConfigTimeout
	}
	if o.EndTimeout == 0 {
		o.EndTimeout = DefaultEndTimeout
	}
	if o.ActivityBuffer <= 0 {
		o.ActivityBuffer = activity.DefaultCapacity
	}
	if o.ReplayBuffer <= 0 {
		o.ReplayBuffer = uplink.DefaultReplayCapacity
	}
	if o.EngineServerName == "" {
		o.EngineServerName = host
	}
	if o.SharedMemoryCheck <= 0 {
		o.SharedMemoryCheck = DefaultSharedMemoryCheck
	}
	return nil
}

// Run runs the pod process until the engine orders the end, client-mode conversations have
// all ended, or ctx is done (the pod is stopping: SIGTERM); each ends gracefully, within
// EndTimeout. It fails if no usable Config arrives within ConfigTimeout or the connector
// fails, and returns only once every goroutine it started has returned.
func Run(ctx context.Context, o Options) error {
	if err := o.validate(); err != nil {
		return err
	}
	log := o.Logger.WithValues("connector", o.Namespace+"/"+o.Connector, "pod", o.Pod)
	p := &process{o: o, log: log}
	if err := p.setup(); err != nil {
		return err
	}
	shared, err := openSharedMemory(o.SharedMemoryDir, o.Namespace)
	if err != nil {
		return fmt.Errorf("shared memory: %w", err)
	}
	if shared != nil {
		p.shared = shared
		p.health = &storeHealth{store: shared, interval: o.SharedMemoryCheck, log: log.WithName("shared-memory")}
		log.Info("shared variables in Redis", "store", shared.String(), "keyNamespace", o.Namespace)
	}
	addr, stopMetrics, err := p.metrics.Serve(o.MetricsAddress, p.ready)
	if err != nil {
		return err
	}
	defer stopMetrics()
	if addr != nil {
		log.Info("metrics endpoint", "address", addr.String())
	}
	log.Info("parley connector starting", "version", o.Version, "engine", o.EngineAddress, "run", p.up.RunID())
	if p.shared != nil {
		defer func() { _ = p.shared.Close() }()
		hctx, stopHealth := context.WithCancel(context.Background())
		healthDone := make(chan struct{})
		go func() {
			defer close(healthDone)
			p.health.run(hctx)
		}()
		defer func() { stopHealth(); <-healthDone }()
	}

	go p.reg.Run()
	upCtx, upCancel := context.WithCancel(context.Background())
	p.upDone = make(chan struct{})
	go func() {
		defer close(p.upDone)
		_ = p.up.Run(upCtx)
	}()
	p.stopUplink = upCancel
	defer upCancel()
	return p.loop(ctx)
}

// process is one `parley connector`: the register, the engine uplink, and the connector
// running the engine's current Config. Only the loop goroutine changes it; heartbeats read
// the counters under statsMu.
type process struct {
	o       Options
	log     logr.Logger
	metrics *metrics.Metrics
	reg     *activity.Register
	up      *uplink.Uplink
	// shared is the store of shared variables every connector of the process is handed, and
	// health its checks; nil without a store (each connector keeps its own, in process).
	shared *sharedmemory.Redis
	health *storeHealth

	upDone     chan struct{}
	stopUplink context.CancelFunc

	// The connector and what it was started with; running until stopRun has stopped it.
	conn    *connector.Connector
	prog    *rules.Program
	net     network
	running bool
	// runDone receives what its serving call returned; nil once received.
	runDone chan error
	paused  atomic.Bool
	// ended is set once the engine's End order has been carried out.
	ended atomic.Bool

	statsMu sync.Mutex
	// Totals of connectors replaced after a network change: heartbeats stay monotonic.
	baseTotal, baseRejected, baseEvicted uint64
	// retired are the counters the metrics read of those connectors, beside the heartbeat's:
	// a Prometheus counter must not fall back either.
	retired datagramCounts
	current *connector.Connector
}

// datagramCounts are a connector's counters that the metrics read from its Stats rather
// than from the heartbeat.
type datagramCounts struct {
	rateLimited, unverifiedHellos, udpSocketDropped uint64
	dtls                                            metrics.DTLSDropped
}

func datagramCountsOf(st connector.Stats) datagramCounts {
	return datagramCounts{st.RateLimited, st.DTLSUnverified, st.UDPSocketDropped,
		metrics.DTLSDropped{Evicted: st.DTLSEvicted, Backlog: st.DTLSBacklogDropped, Buffer: st.DTLSBufferDropped, Socket: st.DTLSSocketDropped}}
}

// dropped are the datagrams lost for lack of room before any conversation read them: the
// kernel's full receive buffer (UDP or DTLS socket), and the DTLS listener's full backlog
// and per-source buffers. DTLS handshakes evicted or never verified are not among them: a
// conversation's handshake read their datagrams.
func (d datagramCounts) dropped() uint64 {
	return d.udpSocketDropped + d.dtls.Socket + d.dtls.Backlog + d.dtls.Buffer
}

func (d datagramCounts) plus(o datagramCounts) datagramCounts {
	return datagramCounts{d.rateLimited + o.rateLimited, d.unverifiedHellos + o.unverifiedHellos, d.udpSocketDropped + o.udpSocketDropped,
		metrics.DTLSDropped{Evicted: d.dtls.Evicted + o.dtls.Evicted, Backlog: d.dtls.Backlog + o.dtls.Backlog,
			Buffer: d.dtls.Buffer + o.dtls.Buffer, Socket: d.dtls.Socket + o.dtls.Socket}}
}

func (p *process) setup() error {
	o := p.o
	var err error
	// Scrapes start once setup is done: the counters read the register and the uplink.
	if p.metrics, err = metrics.New(p.counters); err != nil {
		return err
	}
	p.up, err = uplink.New(uplink.Options{
		Address: o.EngineAddress,
		TLS: func() (*tls.Config, error) {
			pem, err := os.ReadFile(o.EngineCAFile)
			if err != nil {
				return nil, fmt.Errorf("engine CA: %w", err)
			}
			return enginev1.ClientTLSConfig(pem, o.EngineServerName)
		},
		Token: func() (string, error) {
			b, err := os.ReadFile(o.TokenFile)
			if err != nil {
				return "", err
			}
			return strings.TrimSpace(string(b)), nil
		},
		Connector: o.Connector, Namespace: o.Namespace, Pod: o.Pod, Version: o.Version,
		ReplayCapacity: o.ReplayBuffer,
		ReplayBytes:    int(o.ReplayBudget),
		Heartbeat:      p.heartbeat,
		Logger:         p.log.WithName("engine"),
		Registerer:     p.metrics.Registerer(),
	})
	if err != nil {
		return err
	}
	p.reg = activity.NewRegister(p.metrics.Sink(p.up), o.ActivityBuffer, func(err error) {
		p.log.Error(err, "activities not handed to the engine client")
	})
	p.reg.SetBudget(o.ActivityBudget)
	return nil
}

// ready is the pod's readiness (/readyz): connected to the engine, and serving (or, in
// client mode, dialing) the rules it sent. Kubernetes then counts a pod ready only when it
// both answers peers and reports what they do.
func (p *process) ready() error {
	if p.ended.Load() {
		return errors.New("ended by the engine's End order")
	}
	if !p.up.Stats().Connected {
		if err := p.up.LastError(); err != nil {
			return fmt.Errorf("not connected to the engine: %w", err)
		}
		return errors.New("not connected to the engine yet")
	}
	p.statsMu.Lock()
	c := p.current
	p.statsMu.Unlock()
	if c == nil {
		return errors.New("no rules from the engine yet")
	}
	select {
	case <-c.Ready():
		return nil
	default:
		return errors.New("not serving yet")
	}
}

// counters are the metrics' view of the heartbeat, and of the connectors' datagram counts.
func (p *process) counters() metrics.Counters {
	hb, d := p.snapshot()
	return metrics.Counters{
		ActiveConnections: hb.GetActiveConnections(), TotalConnections: hb.GetTotalConnections(),
		RejectedConnections: hb.GetRejectedConnections(), ActivitiesProduced: hb.GetActivitiesProduced(),
		ActivitiesDropped: hb.GetActivitiesDropped(), SharedMemoryErrors: hb.GetSharedMemory().GetErrors(),
		EvictedConnections:   hb.GetEvictedConnections(), // the connectors' before this one's too
		RateLimitedDatagrams: d.rateLimited, UnverifiedHellos: d.unverifiedHellos, UDPSocketDropped: d.udpSocketDropped,
		DTLSDropped: d.dtls,
	}
}

// heartbeat gathers the counters the engine adds into the connector's status.
func (p *process) heartbeat() *enginev1.Heartbeat {
	hb, _ := p.snapshot()
	return hb
}

// snapshot is the heartbeat and the datagram counts of the connectors so far, from one
// read of the serving connector's Stats (each reads the UDP sockets' drop counts): the
// heartbeat's datagram counts are the metrics', replaced connectors' included.
func (p *process) snapshot() (*enginev1.Heartbeat, datagramCounts) {
	p.statsMu.Lock()
	c, total, rejected, evicted, d := p.current, p.baseTotal, p.baseRejected, p.baseEvicted, p.retired
	p.statsMu.Unlock()
	hb := &enginev1.Heartbeat{TotalConnections: total, RejectedConnections: rejected, EvictedConnections: evicted, Paused: p.paused.Load()}
	var stepErrors uint64
	if c != nil {
		st := c.Stats()
		hb.ActiveConnections = int64(st.Active)
		hb.TotalConnections += st.Total
		hb.RejectedConnections += st.Rejected
		hb.EvictedConnections += st.Evicted
		stepErrors = st.SharedMemoryErrors
		d = d.plus(datagramCountsOf(st))
	}
	hb.RateLimitedDatagrams, hb.DroppedDatagrams = d.rateLimited, d.dropped()
	rs := p.reg.Stats()
	hb.ActivitiesProduced = rs.Recorded + rs.Dropped
	hb.ActivitiesDropped = rs.Dropped + p.up.Stats().Dropped
	if p.health != nil {
		hb.SharedMemory = p.health.report(stepErrors)
	}
	return hb, d
}

// loop waits for the first usable Config, then follows the engine until the process ends.
func (p *process) loop(ctx context.Context) error {
	firstConfig := time.NewTimer(p.o.ConfigTimeout)
	defer firstConfig.Stop()
	var rejected error
	for {
		var expired <-chan time.Time
		if p.conn == nil {
			expired = firstConfig.C
		}
		select {
		case c := <-p.up.Configs():
			if err := p.apply(c); err != nil {
				rejected = err
			}
		case o := <-p.up.Orders():
			switch o.GetKind() {
			case enginev1.Order_END:
				p.log.Info("the engine ordered the end", "reason", o.GetReason())
				p.end("END order: "+o.GetReason(), true)
				p.ended.Store(true)
				if p.o.HoldAfterEnd && (p.prog == nil || p.prog.Mode != v1alpha1.ModeClient) {
					p.log.Info("ended: holding until the pod is deleted, since a restarted container would find its connector gone")
					<-ctx.Done()
				}
				return nil
			case enginev1.Order_PAUSE:
				p.setPaused(true, "PAUSE order: "+o.GetReason())
			case enginev1.Order_RESUME:
				p.setPaused(false, "RESUME order: "+o.GetReason())
			}
		case <-ctx.Done():
			why := context.Cause(ctx).Error()
			p.log.Info("the pod is stopping: ending conversations", "cause", why)
			p.end("the pod is stopping: "+why, true)
			return nil
		case err := <-p.runDone:
			p.runDone = nil
			if err != nil {
				p.log.Error(err, "the connector stopped")
				p.end("connector failed: "+err.Error(), true)
				return fmt.Errorf("connector: %w", err)
			}
			p.log.Info("every conversation ended")
			p.end("client conversations ended", true)
			return nil
		case <-expired:
			why := "none arrived"
			if rejected != nil {
				why = "the one received was rejected: " + rejected.Error()
			} else if err := p.up.LastError(); err != nil && !p.up.Stats().Connected {
				why += " (engine: " + err.Error() + ")"
			}
			err := fmt.Errorf("no usable Config from the engine at %s within %v: %s", p.o.EngineAddress, p.o.ConfigTimeout, why)
			p.log.Error(err, "giving up; Kubernetes restarts the pod")
			p.end("no usable Config", p.up.Stats().Connected)
			return err
		}
	}
}

// network is what a running connector cannot change: a difference means a new one.
type network struct {
	connector.Network
	// The TLS client settings come from the ExternalConnector, not the rules.
	serverName         string
	insecureSkipVerify bool
}

func (n network) String() string {
	s := fmt.Sprintf("%s %s %s", n.Mode, n.Transport, net.JoinHostPort(n.IP, fmt.Sprint(n.Port)))
	if n.IPv6 {
		s += " ipv6"
	}
	if n.TLS.Enabled {
		s += " tls"
	}
	return s
}

// apply runs a Config: the first starts the connector; later ones update its rules, or
// restart it when the network settings differ. A Config that cannot run is logged and the
// running rules stay.
func (p *process) apply(c *enginev1.Config) error {
	prog, opts, nw, err := p.prepare(c)
	if err != nil {
		kv := []any{"rules", c.GetRulesName(), "generation", c.GetGeneration(), "hash", c.GetHash()}
		if p.prog != nil {
			kv = append(kv, "running", p.prog.Ref)
		}
		p.log.Error(err, "Config rejected: the connector keeps the rules it runs", kv...)
		return err
	}
	p.paused.Store(c.GetPaused())
	switch {
	case p.conn == nil:
		p.log.Info("rules received; starting", "rules", prog.Ref, "network", nw.String(), "paused", c.GetPaused())
		p.start(prog, opts, nw)
	case nw != p.net:
		p.log.Info("network settings changed: ending live conversations and starting over on the new rules (global memory starts afresh)",
			"from", p.net.String(), "to", nw.String(), "rules", prog.Ref)
		p.stopRun()
		p.start(prog, opts, nw)
	case prog.Ref == p.prog.Ref:
		// The same rules again (the engine resends after a reconnection it could not match).
	default:
		p.conn.Update(prog)
		p.prog = prog
		p.log.Info("rules updated: new conversations use them, live ones finish on theirs", "rules", prog.Ref)
	}
	p.setPaused(c.GetPaused(), "Config")
	p.up.SetRulesHash(prog.Ref.Hash)
	return nil
}

// prepare decodes, compiles and checks a Config, and loads the TLS material it needs.
func (p *process) prepare(c *enginev1.Config) (*rules.Program, connector.Options, network, error) {
	opts := connector.Options{Name: p.o.Connector, Register: p.reg, SharedStepTimeout: p.o.SharedStepTimeout}
	if p.shared != nil {
		opts.SharedMemory = p.shared
	}
	var spec v1alpha1.ConversationRulesSpec
	if err := json.Unmarshal(c.GetSpec(), &spec); err != nil {
		return nil, opts, network{}, fmt.Errorf("decode the rules spec: %w", err)
	}
	prog, errs := rules.CompileEffective(c.GetRulesName(), c.GetGeneration(), &spec, v1alpha1.Overrides{IP: c.Ip, Port: c.Port})
	if len(errs) > 0 {
		return nil, opts, network{}, fmt.Errorf("compile: %w", errs.ToAggregate())
	}
	if prog.Ref.Hash != c.GetHash() {
		return nil, opts, network{}, fmt.Errorf("the spec hashes to %s, the engine says %s: operator and connector versions disagree on the rules' form",
			prog.Ref.Hash, c.GetHash())
	}
	nw := network{Network: connector.NetworkOf(prog)}
	if prog.TLS.Enabled {
		t, err := connector.LoadTLS(existing(p.o.TLSDir, TLSCertFile), existing(p.o.TLSDir, TLSKeyFile),
			existing(p.o.TLSClientCADir, CAFile), existing(p.o.TLSDir, CAFile))
		if err != nil {
			return nil, opts, network{}, fmt.Errorf("TLS material: %w", err)
		}
		// Refused here rather than by Run, so that missing material keeps the running rules
		// instead of stopping the process.
		switch {
		case prog.Mode == v1alpha1.ModeServer && t.Certificate == nil:
			return nil, opts, network{}, fmt.Errorf("operation.tls.enabled: no %s and %s in %s (ExternalConnector spec.tls.secretName)", TLSCertFile, TLSKeyFile, p.o.TLSDir)
		case prog.Mode == v1alpha1.ModeServer && prog.TLS.ClientAuthentication && t.ClientCAs == nil:
			return nil, opts, network{}, fmt.Errorf("operation.tls.clientAuthentication: no %s in %s (ExternalConnector spec.tls.clientCASecretName)", CAFile, p.o.TLSClientCADir)
		}
		t.ServerName, t.InsecureSkipVerify = c.GetTlsServerName(), c.GetTlsInsecureSkipVerify()
		opts.TLS = t
		nw.serverName, nw.insecureSkipVerify = t.ServerName, t.InsecureSkipVerify
	}
	return prog, opts, nw, nil
}

// existing is dir/name if that file exists, else "" (LoadTLS skips empty names).
func existing(dir, name string) string {
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	return path
}

func (p *process) start(prog *rules.Program, opts connector.Options, nw network) {
	c, err := connector.New(prog, opts)
	done := make(chan error, 1)
	p.runDone = done
	if err != nil {
		done <- err
		return
	}
	if p.paused.Load() {
		c.Pause()
	}
	p.conn, p.prog, p.net, p.running = c, prog, nw, true
	p.statsMu.Lock()
	p.current = c
	p.statsMu.Unlock()
	served := make(chan struct{})
	go func() {
		var err error
		if prog.Mode == v1alpha1.ModeClient {
			err = c.RunClients()
		} else {
			err = c.ListenAndServe()
		}
		close(served)
		done <- err
	}()
	go func() {
		select {
		case <-c.Ready():
			if a := c.Addr(); a != nil {
				p.log.Info("serving", "address", a.String())
			} else {
				p.log.Info("dialing", "target", nw.String())
			}
		case <-served:
		}
	}()
}

// stopRun ends the connector gracefully (live conversations get their ending) within
// --end-timeout, then cuts what is left (Close), and keeps its counters for the heartbeats.
// It returns once every goroutine of the connector has.
func (p *process) stopRun() {
	if !p.running {
		return
	}
	p.running = false
	ctx, cancel := context.WithTimeout(context.Background(), p.o.EndTimeout)
	defer cancel()
	if err := p.conn.Shutdown(ctx); err != nil {
		p.log.Error(err, "live conversations did not end in time: cutting them", "endTimeout", p.o.EndTimeout.String())
		_ = p.conn.Close()
	}
	if p.runDone != nil {
		if err := <-p.runDone; err != nil && !errors.Is(err, connector.ErrServerClosed) {
			p.log.Error(err, "the connector stopped with an error")
		}
		p.runDone = nil
	}
	st := p.conn.Stats()
	p.statsMu.Lock()
	p.baseTotal += st.Total
	p.baseRejected += st.Rejected
	p.baseEvicted += st.Evicted
	p.retired = p.retired.plus(datagramCountsOf(st))
	p.current = nil
	p.statsMu.Unlock()
}

func (p *process) setPaused(paused bool, why string) {
	p.paused.Store(paused)
	if p.conn == nil {
		return
	}
	if paused {
		p.conn.Pause()
	} else {
		p.conn.Resume()
	}
	p.log.V(1).Info("paused state", "paused", paused, "by", why)
}

// end stops the process in order: conversations get their ending, the register hands its
// last activities to the uplink, the uplink waits for the engine's acks and says Bye. It is
// all bounded by --end-timeout: conversations still live then are cut, and what is not
// delivered is logged.
func (p *process) end(reason string, flush bool) {
	deadline := time.Now().Add(p.o.EndTimeout)
	p.stopRun()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := p.reg.Close(ctx); err != nil {
		// The uplink's buffer is full and the engine is not acknowledging: stop waiting.
		p.up.Close()
		p.log.Error(err, "activities still queued when the end timed out")
	}
	if flush {
		if err := p.up.Flush(ctx, reason); err != nil {
			p.log.Error(err, "activities not all delivered to the engine")
		}
	}
	p.stopUplink()
	<-p.upDone
	// What the register still holds fails at once on the closed uplink: its goroutine ends.
	p.up.Close()
	_ = p.reg.Close(context.Background())
	rs, us := p.reg.Stats(), p.up.Stats()
	// Every activity produced is accounted for: acknowledged by the engine, dropped at the
	// register (over its count or bytes), refused by the closed uplink, or sent and never
	// acknowledged (the engine may have written them; a replay would have).
	p.log.Info("parley connector stopped", "reason", reason, "activities", rs.Recorded+rs.Dropped,
		"dropped", rs.Dropped+us.Dropped, "droppedAtRegister", rs.Dropped, "refusedAfterClose", us.Dropped,
		"unacknowledged", us.LastSeq-us.Acked, "acknowledged", us.Acked, "lastSeq", us.LastSeq)
}
