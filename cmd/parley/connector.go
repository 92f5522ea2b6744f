package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/connector/uplink"
	"github.com/parley-dev/parley/rules"
)

// version is said to the engine in Hello; release builds set it with -ldflags -X.
var version = ""

func parleyVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

// Key names in the connector's TLS Secrets (kubernetes.io/tls, as cert-manager writes them).
const (
	tlsCertFile = "tls.crt"
	tlsKeyFile  = "tls.key"
	caFile      = "ca.crt"
)

type connectorOptions struct {
	engineAddress, engineServerName string
	connector, namespace, pod       string
	tokenFile, engineCAFile         string
	tlsDir, tlsCADir                string
	configTimeout, endTimeout       time.Duration
	metricsAddr                     string
	activityBuffer, replayBuffer    int
	zap                             zap.Options
}

func newConnectorCommand() *cobra.Command {
	o := connectorOptions{zap: zap.Options{Development: false}}
	pod := os.Getenv(v1alpha1.EnvPodName)
	if pod == "" {
		pod, _ = os.Hostname()
	}
	cmd := &cobra.Command{
		Use:   "connector",
		Short: "Run a connector pod: take rules from the engine, hold the conversations, report every activity",
		Long: "Dial the engine, wait for the ExternalConnector's rules, then serve (or, in client mode, dial) " +
			"the conversations and stream every activity to the engine. Rules changes apply to new " +
			"connections at once; END, SIGTERM and SIGINT end live conversations gracefully (ending rule " +
			"sent), flush the activities and say Bye. The defaults come from the pod the operator makes.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runConnector(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.engineAddress, "engine-address", os.Getenv(v1alpha1.EnvEngineAddress), "host:port of the engine (env "+v1alpha1.EnvEngineAddress+")")
	f.StringVar(&o.engineServerName, "engine-server-name", "", "name the engine's certificate must carry (default: the host of --engine-address)")
	f.StringVar(&o.connector, "connector", os.Getenv(v1alpha1.EnvConnector), "ExternalConnector this pod serves (env "+v1alpha1.EnvConnector+")")
	f.StringVar(&o.namespace, "namespace", os.Getenv(v1alpha1.EnvNamespace), "namespace of the ExternalConnector (env "+v1alpha1.EnvNamespace+")")
	f.StringVar(&o.pod, "pod", pod, "pod name reported to the engine (env "+v1alpha1.EnvPodName+", else the hostname)")
	f.StringVar(&o.tokenFile, "engine-token-file", filepath.Join(v1alpha1.EngineMountPath, v1alpha1.TokenKey), "file holding the engine token, read at every dial")
	f.StringVar(&o.engineCAFile, "engine-ca-file", filepath.Join(v1alpha1.EngineMountPath, v1alpha1.EngineCAKey), "PEM CA the engine's certificate must chain to, read at every dial")
	f.StringVar(&o.tlsDir, "tls-dir", v1alpha1.TLSMountPath, "directory of the connector's TLS Secret ("+tlsCertFile+", "+tlsKeyFile+", optional "+caFile+"), for rules with operation.tls.enabled")
	f.StringVar(&o.tlsCADir, "tls-client-ca-dir", v1alpha1.TLSCAMountPath, "directory of the client CA Secret ("+caFile+"), for operation.tls.clientAuthentication")
	f.DurationVar(&o.configTimeout, "config-timeout", 2*time.Minute, "exit non-zero if no usable Config arrives within this time")
	f.DurationVar(&o.endTimeout, "end-timeout", 25*time.Second, "bound of a graceful end: conversations' endings, activity flush and Bye")
	f.StringVar(&o.metricsAddr, "metrics-bind-address", ":9090", "address of the Prometheus metrics endpoint (0 disables it)")
	f.IntVar(&o.activityBuffer, "activity-buffer", activity.DefaultCapacity, "activities waiting for the engine client before new ones are dropped (and counted)")
	f.IntVar(&o.replayBuffer, "replay-buffer", uplink.DefaultReplayCapacity, "activities kept until the engine acknowledges them (replayed after a reconnection)")
	goflags := flag.NewFlagSet("zap", flag.ContinueOnError)
	o.zap.BindFlags(goflags)
	f.AddGoFlagSet(goflags)
	return cmd
}

func (o connectorOptions) validate() error {
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"--engine-address", o.engineAddress}, {"--connector", o.connector}, {"--namespace", o.namespace},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s required (the operator's pods set them through the environment)", strings.Join(missing, ", "))
	}
	if _, _, err := net.SplitHostPort(o.engineAddress); err != nil {
		return fmt.Errorf("--engine-address %q: %w", o.engineAddress, err)
	}
	if o.configTimeout <= 0 || o.endTimeout <= 0 {
		return errors.New("--config-timeout and --end-timeout must be positive")
	}
	return nil
}

func runConnector(parent context.Context, o connectorOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	log := zap.New(zap.UseFlagOptions(&o.zap)).WithValues("connector", o.namespace+"/"+o.connector, "pod", o.pod)
	if o.engineServerName == "" {
		o.engineServerName, _, _ = net.SplitHostPort(o.engineAddress)
	}
	if parent == nil {
		parent = context.Background()
	}
	p := &process{o: o, log: log, metrics: prometheus.NewRegistry()}
	if err := p.setup(); err != nil {
		return err
	}
	stopMetrics, err := p.serveMetrics()
	if err != nil {
		return err
	}
	defer stopMetrics()
	log.Info("parley connector starting", "version", parleyVersion(), "engine", o.engineAddress, "run", p.up.RunID())

	go p.reg.Run()
	upCtx, upCancel := context.WithCancel(context.Background())
	p.upDone = make(chan struct{})
	go func() {
		defer close(p.upDone)
		_ = p.up.Run(upCtx)
	}()
	p.stopUplink = upCancel
	defer upCancel()

	signals, stopSignals := signal.NotifyContext(parent, syscall.SIGTERM, os.Interrupt)
	defer stopSignals()
	return p.loop(signals, stopSignals)
}

// process is one `parley connector`: the register, the engine uplink, and the connector
// running the engine's current Config. Only the loop goroutine changes it; heartbeats read
// the counters under statsMu.
type process struct {
	o       connectorOptions
	log     logr.Logger
	metrics *prometheus.Registry
	reg     *activity.Register
	up      *uplink.Uplink

	upDone     chan struct{}
	stopUplink context.CancelFunc

	// The running connector and what it was started with.
	conn    *connector.Connector
	prog    *rules.Program
	net     network
	cancel  context.CancelFunc
	runDone chan error
	paused  atomic.Bool

	statsMu sync.Mutex
	// Totals of connectors replaced after a network change: heartbeats stay monotonic.
	baseTotal, baseRejected uint64
	current                 *connector.Connector
}

func (p *process) setup() error {
	o := p.o
	var err error
	p.up, err = uplink.New(uplink.Options{
		Address: o.engineAddress,
		TLS: func() (*tls.Config, error) {
			pem, err := os.ReadFile(o.engineCAFile)
			if err != nil {
				return nil, fmt.Errorf("engine CA: %w", err)
			}
			return enginev1.ClientTLSConfig(pem, o.engineServerName)
		},
		Token: func() (string, error) {
			b, err := os.ReadFile(o.tokenFile)
			if err != nil {
				return "", err
			}
			return strings.TrimSpace(string(b)), nil
		},
		Connector: o.connector, Namespace: o.namespace, Pod: o.pod, Version: parleyVersion(),
		ReplayCapacity: o.replayBuffer,
		Heartbeat:      p.heartbeat,
		Logger:         p.log.WithName("engine"),
		Registerer:     p.metrics,
	})
	if err != nil {
		return err
	}
	sink := &countingSink{
		next: p.up,
		inputs: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_connector_inputs_total",
			Help: "Inputs received from peers."}),
		rules: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_connector_rules_fired_total",
			Help: "Custom rules that ran: fired by an input, or run as async rules."}),
	}
	p.reg = activity.NewRegister(sink, o.activityBuffer, func(err error) {
		p.log.Error(err, "activities not handed to the engine client")
	})
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	hb := p.heartbeat
	for _, c := range []prometheus.Collector{
		sink.inputs, sink.rules,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_connector_connections_active", Help: "Live logical connections."},
			func() float64 { return float64(hb().GetActiveConnections()) }),
		counter("parley_connector_connections_total", "Logical connections started.",
			func() float64 { return float64(hb().GetTotalConnections()) }),
		counter("parley_connector_connections_rejected_total", "Peers refused (over a cap, paused).",
			func() float64 { return float64(hb().GetRejectedConnections()) }),
		counter("parley_connector_activities_produced_total", "Activities recorded or dropped.",
			func() float64 { return float64(hb().GetActivitiesProduced()) }),
		counter("parley_connector_activities_dropped_total", "Activities dropped before reaching the engine client (buffers full).",
			func() float64 { return float64(hb().GetActivitiesDropped()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := p.metrics.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// serveMetrics starts the metrics endpoint; a bad address fails the start, not later.
func (p *process) serveMetrics() (stop func(), err error) {
	if p.o.metricsAddr == "0" || p.o.metricsAddr == "" {
		return func() {}, nil
	}
	l, err := net.Listen("tcp", p.o.metricsAddr)
	if err != nil {
		return nil, fmt.Errorf("metrics endpoint: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(p.metrics, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	p.log.Info("metrics endpoint", "address", l.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// heartbeat gathers the counters the engine adds into the connector's status.
func (p *process) heartbeat() *enginev1.Heartbeat {
	p.statsMu.Lock()
	c, total, rejected := p.current, p.baseTotal, p.baseRejected
	p.statsMu.Unlock()
	hb := &enginev1.Heartbeat{TotalConnections: total, RejectedConnections: rejected, Paused: p.paused.Load()}
	if c != nil {
		st := c.Stats()
		hb.ActiveConnections = int64(st.Active)
		hb.TotalConnections += st.Total
		hb.RejectedConnections += st.Rejected
	}
	rs := p.reg.Stats()
	hb.ActivitiesProduced = rs.Recorded + rs.Dropped
	hb.ActivitiesDropped = rs.Dropped + p.up.Stats().Dropped
	return hb
}

// loop waits for the first usable Config, then follows the engine until the process ends.
// After a first signal, a second one kills the process (stopSignals restores the default).
func (p *process) loop(signals context.Context, stopSignals func()) error {
	firstConfig := time.NewTimer(p.o.configTimeout)
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
				return nil
			case enginev1.Order_PAUSE:
				p.setPaused(true, "PAUSE order: "+o.GetReason())
			case enginev1.Order_RESUME:
				p.setPaused(false, "RESUME order: "+o.GetReason())
			}
		case <-signals.Done():
			stopSignals()
			p.log.Info("signalled to stop: ending conversations (signal again to quit at once)")
			p.end("signal: the pod is stopping", true)
			return nil
		case err := <-p.runDone:
			p.runDone, p.cancel = nil, nil
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
			err := fmt.Errorf("no usable Config from the engine at %s within %v: %s", p.o.engineAddress, p.o.configTimeout, why)
			p.log.Error(err, "giving up; Kubernetes restarts the pod")
			p.end("no usable Config", p.up.Stats().Connected)
			return err
		}
	}
}

// network is what a running connector cannot change: a difference means a new one.
type network struct {
	mode               v1alpha1.Mode
	transport          v1alpha1.Transport
	ip                 string
	port               int
	ipv6               bool
	tls, clientAuth    bool
	serverName         string
	insecureSkipVerify bool
}

func (n network) String() string {
	s := fmt.Sprintf("%s %s %s", n.mode, n.transport, net.JoinHostPort(n.ip, fmt.Sprint(n.port)))
	if n.ipv6 {
		s += " ipv6"
	}
	if n.tls {
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
	opts := connector.Options{Name: p.o.connector, Register: p.reg}
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
	nw := network{mode: prog.Mode, transport: prog.Transport, ip: prog.IP, port: prog.Port, ipv6: prog.IPv6}
	if prog.TLS.Enabled {
		t, err := connector.LoadTLS(existing(p.o.tlsDir, tlsCertFile), existing(p.o.tlsDir, tlsKeyFile),
			existing(p.o.tlsCADir, caFile), existing(p.o.tlsDir, caFile))
		if err != nil {
			return nil, opts, network{}, fmt.Errorf("TLS material: %w", err)
		}
		// Refused here rather than by Run, so that missing material keeps the running rules
		// instead of stopping the process.
		switch {
		case prog.Mode == v1alpha1.ModeServer && t.Certificate == nil:
			return nil, opts, network{}, fmt.Errorf("operation.tls.enabled: no %s and %s in %s (ExternalConnector spec.tls.secretName)", tlsCertFile, tlsKeyFile, p.o.tlsDir)
		case prog.Mode == v1alpha1.ModeServer && prog.TLS.ClientAuthentication && t.ClientCAs == nil:
			return nil, opts, network{}, fmt.Errorf("operation.tls.clientAuthentication: no %s in %s (ExternalConnector spec.tls.clientCASecretName)", caFile, p.o.tlsCADir)
		}
		t.ServerName, t.InsecureSkipVerify = c.GetTlsServerName(), c.GetTlsInsecureSkipVerify()
		opts.TLS = t
		nw.tls, nw.clientAuth = true, prog.TLS.ClientAuthentication
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
	ctx, cancel := context.WithCancel(context.Background())
	p.conn, p.prog, p.net, p.cancel = c, prog, nw, cancel
	p.statsMu.Lock()
	p.current = c
	p.statsMu.Unlock()
	go func() { done <- c.Run(ctx) }()
	go func() {
		select {
		case <-c.Ready():
			if a := c.Addr(); a != nil {
				p.log.Info("serving", "address", a.String())
			} else {
				p.log.Info("dialing", "target", nw.String())
			}
		case <-ctx.Done():
		}
	}()
}

// stopRun ends the running connector gracefully (live conversations get their ending) and
// keeps its counters for the heartbeats.
func (p *process) stopRun() {
	if p.cancel == nil {
		return
	}
	p.cancel()
	t := time.NewTimer(p.o.endTimeout)
	defer t.Stop()
	select {
	case err := <-p.runDone:
		if err != nil {
			p.log.Error(err, "the connector stopped with an error")
		}
	case <-t.C:
		p.log.Error(nil, "live conversations did not end in time", "endTimeout", p.o.endTimeout.String())
	}
	st := p.conn.Stats()
	p.statsMu.Lock()
	p.baseTotal += st.Total
	p.baseRejected += st.Rejected
	p.current = nil
	p.statsMu.Unlock()
	p.cancel, p.runDone = nil, nil
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
// all bounded by --end-timeout; what is not delivered by then is logged.
func (p *process) end(reason string, flush bool) {
	deadline := time.Now().Add(p.o.endTimeout)
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
	rs, us := p.reg.Stats(), p.up.Stats()
	p.log.Info("parley connector stopped", "reason", reason, "activities", rs.Recorded+rs.Dropped,
		"dropped", rs.Dropped+us.Dropped, "acknowledged", us.Acked, "lastSeq", us.LastSeq)
}

// countingSink counts inputs and fired rules on their way to the engine, so the runtime
// needs no counters of its own.
type countingSink struct {
	next          activity.Sink
	inputs, rules prometheus.Counter
}

func (s *countingSink) Write(batch []*v1alpha1.ActivityRecord) error {
	inputs, fired := 0, 0
	for _, a := range batch {
		if a.Type == v1alpha1.ActivityInput {
			inputs++
		}
		if r := a.Rules; r != nil {
			fired += len(r.Executed) + len(r.Async)
		}
	}
	s.inputs.Add(float64(inputs))
	s.rules.Add(float64(fired))
	return s.next.Write(batch)
}
