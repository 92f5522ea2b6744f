// Package engine is the operator's side of the connectors' channel (docs/design.md §5, §6):
// a gRPC server over TLS that connector pods dial. It authenticates each pod with its
// connector's token, streams it the compiled rules and every later change, turns
// ExternalConnector pause and deletion into orders, takes back activities in batches and
// writes them as Activity objects through a bounded, rate-limited queue, and reports counters
// in the connector's status, in Events and in Prometheus metrics.
//
// Goroutines: Start owns the gRPC server, the writer's workers and the status loop; gRPC owns
// one goroutine per stream (the receiver), which owns that stream's sender. Everything ends
// when Start's context is cancelled.
package engine

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/engine/pki"
	"github.com/parley-dev/parley/evidence"
	"github.com/parley-dev/parley/sink"
)

// +kubebuilder:rbac:groups=parley.io,resources=activities,verbs=create
// +kubebuilder:rbac:groups=parley.io,resources=externalconnectors,verbs=get;list;watch
// +kubebuilder:rbac:groups=parley.io,resources=externalconnectors/status,verbs=get;patch
// +kubebuilder:rbac:groups=parley.io,resources=conversationrules,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Options configure the engine.
type Options struct {
	// BindAddress is where the gRPC server listens (":9443").
	BindAddress string
	// TLS is the server's TLS configuration (certificates from the engine's PKI); the
	// engine listens once TLSReady (if set) is closed.
	TLS      *tls.Config
	TLSReady <-chan struct{}
	// ActivityQPS and ActivityBurst bound the rate of Activity creates.
	ActivityQPS   float64
	ActivityBurst int
	// ActivityQueue is how many activities may wait to be written before new ones are
	// dropped (and counted).
	ActivityQueue int
	// ActivityQueueBytes bounds the same by bytes (v1alpha1.ActivityRecord.ApproxSize),
	// the activities being written included: large inputs reach it long before the count.
	// Default DefaultActivityQueueBytes.
	ActivityQueueBytes int64
	// Writers is how many creates may be in flight at once. Default 4.
	Writers int
	// StatusInterval is how often changed counters are written to connectors' status.
	// Default 2s.
	StatusInterval time.Duration
	// Registry receives the engine's metrics. Default: controller-runtime's registry.
	Registry prometheus.Registerer
	// AlertEvents caps the alert Events of one connector per minute (a burst of as many,
	// then as many a minute); the alerts beyond it are summed up in one AlertsSuppressed
	// Event a minute. Default 30.
	AlertEvents int
	// ReconnectGrace is how long a new leader waits for connector pods to dial it before it
	// believes what it sees: it then sets EngineConnected False on connectors whose status
	// still says connected and whose pods did not come back, and until then End does not
	// call a connector done while its status says it has pods connected. Default 15s, a few
	// times the pods' longest redial delay; negative turns both off (tests that run several
	// engines, each with connectors of its own, on one API server).
	ReconnectGrace time.Duration
	// SinkOptions shape each ActivitySink's queue, batches and retries (sink.Options).
	SinkOptions sink.Options
	// SignKey, when set, signs checkpoints of each connector run's evidence chain into the
	// activity log, at least every CheckpointEvery activities (1000) or CheckpointInterval
	// (10s) after the oldest unsigned one (docs/evidence.md).
	SignKey            ed25519.PrivateKey
	CheckpointEvery    int
	CheckpointInterval time.Duration
}

// Engine serves connector streams. It implements manager.Runnable, run by the elected
// leader only, and controllers.Ender.
type Engine struct {
	enginev1.UnimplementedEngineServer

	opts      Options
	client    client.Client // cached reads, status patches
	apiReader client.Reader // Secrets, which the operator does not cache with their data
	recorder  events.EventRecorder
	log       logr.Logger
	// activityLog writes one JSON line per activity.
	activityLog logr.Logger
	metrics     *engineMetrics
	writer      *writer
	sinks       sinks
	// signer signs checkpoints of the chains; nil without Options.SignKey. chains maps
	// each chain signed to its connector (types.NamespacedName), whose sinks get its
	// checkpoints.
	signer *evidence.Signer
	chains sync.Map

	mu         sync.Mutex
	connectors map[types.NamespacedName]*connectorState
	runs       map[runKey]*runState
	ready      chan struct{}
	// stopping: streams closing now are the engine's doing, not lost connectors.
	stopping atomic.Bool
	// leadingSince is when this engine started serving, as the elected leader.
	leadingSince atomic.Pointer[time.Time]
	// Set by Setup.
	address string
	certs   *pki.Manager
	// elected is closed once this replica leads; leader labels its pod for the engine
	// Service (nil outside a pod).
	elected <-chan struct{}
	leader  *leaderPod
}

// New returns an engine using mgr's cache, clients and event recorder. Activities are
// created through a client of their own, whose only rate limit is the engine's: the
// manager's client-side limit is shared with the reconcilers and would cap the write rate.
func New(mgr ctrl.Manager, opts Options) (*Engine, error) {
	if opts.TLS == nil {
		return nil, errors.New("engine: Options.TLS is required")
	}
	if opts.ActivityQPS <= 0 {
		return nil, fmt.Errorf("engine: activity write rate must be positive, got %v", opts.ActivityQPS)
	}
	if opts.ActivityBurst <= 0 {
		opts.ActivityBurst = 1
	}
	if opts.ActivityQueue <= 0 {
		opts.ActivityQueue = 10000
	}
	if opts.ActivityQueueBytes <= 0 {
		opts.ActivityQueueBytes = DefaultActivityQueueBytes
	}
	if opts.Writers <= 0 {
		opts.Writers = 4
	}
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = 2 * time.Second
	}
	if opts.AlertEvents <= 0 {
		opts.AlertEvents = 30
	}
	if opts.ReconnectGrace == 0 {
		opts.ReconnectGrace = 15 * time.Second
	}
	if opts.Registry == nil {
		opts.Registry = metrics.Registry
	}
	m, err := newEngineMetrics(opts.Registry)
	if err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(mgr.GetConfig())
	cfg.QPS, cfg.Burst = -1, 0
	writeClient, err := client.New(cfg, client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return nil, fmt.Errorf("engine: activity client: %w", err)
	}
	log := mgr.GetLogger().WithName("engine")
	e := &Engine{
		opts:        opts,
		client:      mgr.GetClient(),
		apiReader:   mgr.GetAPIReader(),
		recorder:    mgr.GetEventRecorder("parley-engine"),
		log:         log,
		activityLog: log.WithName("activity"),
		metrics:     m,
		connectors:  map[types.NamespacedName]*connectorState{},
		runs:        map[runKey]*runState{},
		ready:       make(chan struct{}),
		elected:     mgr.Elected(),
		sinks:       sinks{byNamespace: map[string][]*delivery{}, records: map[types.NamespacedName]*sinkRecord{}},
	}
	if err := opts.Registry.Register(sinkCollector{e}); err != nil {
		return nil, fmt.Errorf("register sink metrics: %w", err)
	}
	e.writer = newWriter(writeClient, opts, m, log)
	if opts.SignKey != nil {
		e.signer = evidence.NewSigner(opts.SignKey, opts.CheckpointEvery, opts.CheckpointInterval)
	}
	return e, nil
}

// SetupWithManager adds the engine to mgr and has it hear about every change of
// ExternalConnectors and ConversationRules, which may change what its streams should run.
func (e *Engine) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	kick := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { e.changed(obj) },
		UpdateFunc: func(_, obj any) { e.changed(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			e.changed(obj)
			if ec, ok := obj.(*v1alpha1.ExternalConnector); ok {
				if cs := e.lookup(client.ObjectKeyFromObject(ec)); cs != nil {
					e.forgetConnector(cs)
				}
			}
		},
	}
	for _, obj := range []client.Object{&v1alpha1.ExternalConnector{}, &v1alpha1.ConversationRules{}} {
		inf, err := mgr.GetCache().GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("engine: informer for %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(kick); err != nil {
			return fmt.Errorf("engine: watch %T: %w", obj, err)
		}
	}
	if err := e.setupSinks(mgr); err != nil {
		return fmt.Errorf("engine: ActivitySink delivery: %w", err)
	}
	return mgr.Add(e)
}

// NeedLeaderElection is true: only the leader serves, so that one engine sees every pod of
// a connector. Its counters, EngineConnected and End then hold whichever pods are
// connected, and a standby's port is not even open.
func (e *Engine) NeedLeaderElection() bool { return true }

// Ready is closed once the engine listens.
func (e *Engine) Ready() <-chan struct{} { return e.ready }

// Start serves until ctx is cancelled, once this replica is elected. Streams are told to
// reconnect (to the next leader, which the engine Service reaches once it has labelled its
// pod); activities queued but not written are not acknowledged, so their connectors replay
// them to it.
func (e *Engine) Start(ctx context.Context) error {
	now := time.Now()
	e.leadingSince.Store(&now)
	if e.opts.TLSReady != nil {
		select {
		case <-e.opts.TLSReady:
		case <-ctx.Done():
			return nil
		}
	}
	lis, err := net.Listen("tcp", e.opts.BindAddress)
	if err != nil {
		return fmt.Errorf("engine: listen on %s: %w", e.opts.BindAddress, err)
	}
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(e.opts.TLS)),
		// Connectors behind NATs and load balancers: keep idle streams alive, and notice
		// dead peers within a minute.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(64<<20),
	)
	enginev1.RegisterEngineServer(srv, e)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { e.writer.run(runCtx) })
	wg.Go(func() { e.statusLoop(runCtx) })
	if e.signer != nil {
		wg.Go(func() { e.checkpointLoop(runCtx) })
	}
	// Every ActivitySink built before the first stream, which may bring a replay of what
	// the last engine's sinks held.
	e.buildSinks(runCtx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	e.log.Info("engine listening", "address", lis.Addr().String())
	close(e.ready)
	markCtx, stopMarking := context.WithCancel(runCtx)
	marked := make(chan struct{})
	go func() {
		defer close(marked)
		if e.leader != nil {
			e.leader.markUntilDone(markCtx, func(err error) { e.log.Error(err, "label this pod as the engine's leader; retrying") })
		}
	}()
	if e.opts.ReconnectGrace > 0 {
		wg.Go(func() { e.forgetAbsentPods(runCtx) })
	}

	select {
	case <-ctx.Done():
	case err = <-served:
		err = fmt.Errorf("engine: serve: %w", err)
	}
	e.stopping.Store(true)
	stopMarking()
	<-marked
	if e.leader != nil {
		// First out of the engine Service, so that pods told to dial again do not come back.
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := e.leader.mark(uctx, false); err != nil {
			e.log.Error(err, "remove this pod's engine leader label; the next process of the pod removes it")
		}
		ucancel()
	}
	e.disconnectAll()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		srv.Stop()
		<-stopped
	}
	cancel()
	wg.Wait()
	if e.signer != nil {
		e.logCheckpoints("", e.signer.Due(true))
	}
	e.stopSinks()
	// The last counters, before the lease goes to the next leader (which reads them back as
	// its base): activities acknowledged since the last interval count here or nowhere.
	if failed := e.flushStatus(context.WithoutCancel(ctx)); failed > 0 {
		e.log.Info("engine stopped; the status of some connectors could not be written", "failed", failed)
	} else {
		e.log.Info("engine stopped; status written")
	}
	return err
}
