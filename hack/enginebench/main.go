// Command enginebench measures the activity path from a connector to Activity objects: it
// starts a kube-apiserver and etcd (envtest; KUBEBUILDER_ASSETS must point at them, see
// hack/envtest-assets.sh), runs the operator's controllers and engine in a manager inside this
// process (as `parley operator` assembles them, with administrator credentials), creates a
// ConversationRules and an ExternalConnector serving on a free loopback port, runs a real
// `parley connector` process against the engine, and holds TCP conversations with it from
// concurrent clients. Each conversation (greeting, PING, QUIT) makes exactly 5 activities.
//
//	go build -o /tmp/parley ./cmd/parley
//	export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)
//	go run ./hack/enginebench -parley /tmp/parley -mode throughput -activities 20000
//	go run ./hack/enginebench -parley /tmp/parley -mode flood -duration 60s
//	go run ./hack/enginebench -parley /tmp/parley -mode kafka -activities 200000 -pings 50
//
// Mode throughput (write limit effectively off) produces -activities activities and times
// them from the first conversation to the last Activity created, then checks that every one
// was written once and that the connector's status counts them exactly. Mode flood (the
// operator's default limit: 20/s, burst 50, queue 10000) converses as fast as the clients
// can for -duration and reports what was produced, written and dropped, and the memory of
// the engine (this process: it also hosts the controllers, the load clients and the
// benchmark's own API client) and of the connector process. Mode kafka (kafka.go) sends
// every activity through an ActivitySink to Kafka (franz-go's kfake, in this process) with
// Activity objects limited to alerts, and times them to the last one the sink delivered.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/controllers"
	"github.com/parley-dev/parley/engine"
	"github.com/parley-dev/parley/internal/freeport"
	"github.com/parley-dev/parley/sink"
)

// perConversation is how many activities one conversation makes: Connected, Greeted, two
// Inputs (PING, QUIT) and Ended.
const perConversation = 5

// rulesYAML is a line service: greeting, PING answered, QUIT ending the conversation. Every
// socket is its own conversation (identifyBy: Address): the clients all come from 127.0.0.1. The
// listen backlog (connectionQueue) must hold the clients' concurrent dials.
const rulesYAML = `
operation: {port: 7000, interactionTimeout: 60s, identifyBy: Address, maxConcurrentConnections: 1000, connectionQueue: 4096}
conversation:
  greetings: {value: "+OK ready\r\n"}
  default:   {value: "-ERR unknown\r\n"}
  ending:    {value: "+OK bye\r\n"}
  rules:
  - {id: 1, mode: Sync, regex: "^PING", response: "+PONG\r\n"}
  - {id: 2, mode: Sync, regex: "^QUIT", ending: true}
`

const (
	namespace       = "bench"
	connectorName   = "bench"
	engineNamespace = "parley-system"
)

type config struct {
	parley     string
	mode       string
	activities int
	clients    int
	duration   time.Duration
	qps        float64
	burst      int
	queue      int
	writers    int
	engineLog  string
	cpuProfile string
	pings      int
}

func main() {
	var c config
	flag.StringVar(&c.parley, "parley", "parley", "the parley binary to run as the connector")
	flag.StringVar(&c.mode, "mode", "throughput", "throughput (write limit off, -activities activities) or flood (default limit, -duration of traffic)")
	flag.IntVar(&c.activities, "activities", 20000, "throughput: activities to produce (rounded up to whole conversations of 5)")
	flag.IntVar(&c.clients, "clients", 16, "concurrent TCP clients, each holding one conversation after another")
	flag.DurationVar(&c.duration, "duration", 60*time.Second, "flood: how long the clients converse")
	flag.Float64Var(&c.qps, "qps", 0, "engine ActivityQPS (default: 100000 for throughput, 20 for flood, as --activity-qps)")
	flag.IntVar(&c.burst, "burst", 0, "engine ActivityBurst (default: 100000 for throughput, 50 for flood)")
	flag.IntVar(&c.queue, "queue", 0, "engine ActivityQueue (default: 100000 for throughput, 10000 for flood)")
	flag.IntVar(&c.writers, "writers", 0, "engine Writers, creates in flight (default: the engine's, 4)")
	flag.StringVar(&c.engineLog, "engine-log", "", "file for the operator's log at info level, one JSON line per activity received as in production (default: encoded and discarded; errors go to stderr)")
	flag.IntVar(&c.pings, "pings", 50, "kafka: PINGs per conversation (a conversation makes pings+4 activities)")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (operator and load clients) over the measured window to this file")
	flag.Parse()
	switch c.mode {
	case "throughput":
		c.qps, c.burst, c.queue = or(c.qps, 100000), or(c.burst, 100000), or(c.queue, 100000)
	case "flood":
		c.qps, c.burst, c.queue = or(c.qps, 20), or(c.burst, 50), or(c.queue, 10000)
	case "kafka":
		// The operator's defaults: with spec.activities.record Alerts and no alert in the
		// rules, nothing is written.
		c.qps, c.burst, c.queue = or(c.qps, 20), or(c.burst, 50), or(c.queue, 10000)
	default:
		fmt.Fprintln(os.Stderr, "enginebench: -mode is throughput, flood or kafka")
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "enginebench:", err)
		os.Exit(1)
	}
}

func or[T int | float64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "enginebench: "+format+"\n", args...)
}

// bench is one run: the API server, the operator in this process, one connector process.
type bench struct {
	cfg      config
	k8s      client.Client
	eng      *engine.Engine
	reg      *prometheus.Registry
	port     int        // the connector's serving port
	metrics  string     // the connector's metrics URL
	connMu   sync.Mutex // conn and connDone, set once; the signal handler reads them
	conn     *exec.Cmd
	dir      string // the connector's credentials and log
	connLog  string
	connDone chan struct{} // closed when the connector has exited, with connErr
	connErr  error
	kafka    *kafkaSink // mode kafka
	stopMgr  context.CancelFunc
	mgrDone  chan struct{}
}

func run(cfg config) (err error) {
	scheme := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	logOut, closeLog, err := operatorLog(cfg.engineLog)
	if err != nil {
		return err
	}
	defer closeLog()
	// `parley operator` logs at info, in JSON: the engine logs every activity it receives.
	ctrl.SetLogger(zap.New(zap.WriteTo(logOut), zap.UseDevMode(false)))

	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
	restCfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("start envtest (is KUBEBUILDER_ASSETS set?): %w", err)
	}
	defer func() { _ = env.Stop() }()
	b := &bench{cfg: cfg}
	// Interrupted (^C, a timeout's SIGTERM), stop etcd, kube-apiserver and the connector
	// rather than leave them running.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-signals
		logf("%v: stopping envtest and the connector", sig)
		b.killConnector()
		_ = env.Stop()
		os.Exit(1)
	}()
	defer func() {
		if b.dir == "" {
			return
		}
		if err != nil {
			logf("the connector's log is in %s", b.connLog)
			return
		}
		_ = os.RemoveAll(b.dir)
	}()
	if b.k8s, err = client.New(restCfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	ctx := context.Background()
	for _, ns := range []string{engineNamespace, namespace} {
		if err := b.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	if err := b.startOperator(restCfg, scheme); err != nil {
		return err
	}
	defer b.stopOperator()
	if cfg.mode == "kafka" {
		if b.kafka, err = startKafkaSink(ctx, b.k8s, b.reg); err != nil {
			return err
		}
		defer b.kafka.close()
	}
	if err := b.startConnector(ctx); err != nil {
		return err
	}
	defer b.killConnector()

	fmt.Printf("# machine: nproc=%d %s %s/%s\n", runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Printf("# mode %s: engine qps %g, burst %d, queue %d, writers %s; %d clients\n",
		cfg.mode, cfg.qps, cfg.burst, cfg.queue, writersString(cfg.writers), cfg.clients)
	switch cfg.mode {
	case "throughput":
		return b.throughput(ctx)
	case "kafka":
		return b.kafkaThroughput(ctx)
	}
	return b.flood(ctx)
}

func writersString(n int) string {
	if n == 0 {
		return "4 (default)"
	}
	return strconv.Itoa(n)
}

// operatorLog is where the operator's log goes: a file, or an encoder's sink that keeps only
// errors (to stderr), so that the cost of encoding a line per activity is still paid.
func operatorLog(path string) (io.Writer, func(), error) {
	if path == "" {
		return errorsOnly{}, func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, nil, err
	}
	w := bufio.NewWriterSize(f, 1<<16)
	return &lockedWriter{w: w}, func() { _ = w.Flush(); _ = f.Close() }, nil
}

type errorsOnly struct{}

func (errorsOnly) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(`"level":"error"`)) {
		_, _ = os.Stderr.Write(p)
	}
	return len(p), nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// startOperator runs the controllers and the engine in a manager, as `parley operator` does.
func (b *bench) startOperator(restCfg *rest.Config, scheme *k8sruntime.Scheme) error {
	cfg := rest.CopyConfig(restCfg)
	cfg.QPS, cfg.Burst = -1, 0 // as ctrl.GetConfig: no client-side limit
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  controllers.CacheOptions(),
	})
	if err != nil {
		return err
	}
	port, err := freeport.Pick()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	b.reg = prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	b.stopMgr = cancel
	b.eng, err = engine.Setup(ctx, mgr, engine.Config{
		Options: engine.Options{BindAddress: addr, ActivityQPS: b.cfg.qps, ActivityBurst: b.cfg.burst,
			ActivityQueue: b.cfg.queue, Writers: b.cfg.writers, Registry: b.reg,
			SinkOptions: sink.Options{QueueLength: 100000, MaxBatch: 1000}},
		Address: addr, SecretName: "parley-engine-tls", SecretNamespace: engineNamespace,
	})
	if err != nil {
		return err
	}
	d := controllers.Defaults{ConnectorImage: "parley:bench", EngineAddress: b.eng.Address(), Ender: b.eng, EngineCA: b.eng.CA}
	if err := controllers.Setup(mgr, d); err != nil {
		return err
	}
	b.mgrDone = make(chan struct{})
	go func() {
		defer close(b.mgrDone)
		if err := mgr.Start(ctx); err != nil {
			logf("manager: %v", err)
		}
	}()
	select {
	case <-b.eng.Ready():
		return nil
	case <-time.After(60 * time.Second):
		return errors.New("the engine did not listen within 60s")
	}
}

// stopOperator stops the manager: the engine abandons what is queued and writes the final
// counters to the connector's status.
func (b *bench) stopOperator() {
	if b.stopMgr == nil {
		return
	}
	b.stopMgr()
	b.stopMgr = nil
	select {
	case <-b.mgrDone:
	case <-time.After(60 * time.Second):
		logf("the manager did not stop within 60s")
	}
}

// startConnector creates the rules and the connector, writes its engine Secret's token and CA
// into files as its pod's volume would, and runs `parley connector` until it serves.
func (b *bench) startConnector(ctx context.Context) error {
	port, err := freeport.Pick()
	if err != nil {
		return err
	}
	b.port = port
	cr := &v1alpha1.ConversationRules{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "lines"}}
	rules := rulesYAML
	if b.cfg.mode == "kafka" {
		// Line framing: the clients send their PINGs at once, each still one input.
		rules = strings.Replace(rules, "connectionQueue: 4096}", `connectionQueue: 4096, framing: {type: Delimiter, delimiter: "\r\n"}}`, 1)
	}
	if err := yaml.UnmarshalStrict([]byte(rules), &cr.Spec); err != nil {
		return err
	}
	if err := b.k8s.Create(ctx, cr); err != nil {
		return err
	}
	p, ip := int32(port), "127.0.0.1"
	ec := &v1alpha1.ExternalConnector{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: connectorName},
		Spec: v1alpha1.ExternalConnectorSpec{Rules: "lines", Port: &p, IP: ip}}
	if b.cfg.mode == "kafka" {
		ec.Spec.Activities.Record = v1alpha1.RecordAlerts
	}
	if err := b.k8s.Create(ctx, ec); err != nil {
		return err
	}
	var sec corev1.Secret
	err = poll(60*time.Second, func() error {
		if err := b.k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: v1alpha1.EngineSecretName(connectorName)}, &sec); err != nil {
			return err
		}
		if len(sec.Data[v1alpha1.TokenKey]) == 0 || len(sec.Data[v1alpha1.EngineCAKey]) == 0 {
			return errors.New("no token or CA yet")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("the connector's engine Secret: %w", err)
	}
	dir, err := os.MkdirTemp("", "parley-enginebench-")
	if err != nil {
		return err
	}
	b.dir = dir
	token, ca := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(token, sec.Data[v1alpha1.TokenKey], 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(ca, sec.Data[v1alpha1.EngineCAKey], 0o600); err != nil {
		return err
	}
	mport, err := freeport.Pick()
	if err != nil {
		return err
	}
	maddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(mport))
	b.metrics = "http://" + maddr + "/metrics"
	b.connLog = filepath.Join(dir, "connector.log")
	logFile, err := os.Create(b.connLog)
	if err != nil {
		return err
	}
	// A short end timeout: after a flood, the connector holds more than the engine would take
	// in minutes, and the benchmark only wants its final counters.
	endTimeout := "25s"
	if b.cfg.mode == "flood" {
		endTimeout = "3s"
	}
	cmd := exec.Command(b.cfg.parley, "connector", "--engine-token-file", token, "--engine-ca-file", ca,
		"--metrics-bind-address", maddr, "--config-timeout", "60s", "--end-timeout", endTimeout)
	cmd.Env = append(os.Environ(),
		v1alpha1.EnvConnector+"="+connectorName, v1alpha1.EnvNamespace+"="+namespace,
		v1alpha1.EnvEngineAddress+"="+b.eng.Address(), v1alpha1.EnvPodName+"="+connectorName+"-pod")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		b.connErr = cmd.Wait()
		_ = logFile.Close()
		close(done)
	}()
	b.connMu.Lock()
	b.conn, b.connDone = cmd, done
	b.connMu.Unlock()
	err = poll(60*time.Second, func() error {
		c, err := net.DialTimeout("tcp", b.addr(), time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		return fmt.Errorf("the connector does not serve (log %s): %w", b.connLog, err)
	}
	// The process's own activities (ConnectorStarted and the like) are written before the run.
	err = poll(60*time.Second, func() error {
		cm, err := b.connectorMetrics()
		if err != nil {
			return err
		}
		if done := b.disposed(); done != cm["parley_connector_activities_produced_total"] {
			return fmt.Errorf("%v of %v start-up activities written or delivered", done, cm["parley_connector_activities_produced_total"])
		}
		return nil
	})
	if err != nil {
		return err
	}
	// One conversation the connector has already seen makes the first timed one cheaper:
	// the same for both modes and not counted.
	if err := converse(b.addr()); err != nil {
		return fmt.Errorf("warm-up conversation: %w", err)
	}
	return poll(60*time.Second, func() error {
		cm, err := b.connectorMetrics()
		if err != nil {
			return err
		}
		if b.disposed() != cm["parley_connector_activities_produced_total"] {
			return errors.New("warm-up not written yet")
		}
		return nil
	})
}

func (b *bench) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)) }

func (b *bench) killConnector() {
	b.connMu.Lock()
	defer b.connMu.Unlock()
	if b.conn == nil {
		return
	}
	select {
	case <-b.connDone:
	default:
		_ = b.conn.Process.Kill()
		<-b.connDone
	}
}

// stopConnector ends the connector with SIGTERM, as Kubernetes would, and returns its last
// log line's counters.
func (b *bench) stopConnector() (connectorFinal, error) {
	if err := b.conn.Process.Signal(syscall.SIGTERM); err != nil {
		return connectorFinal{}, err
	}
	select {
	case <-b.connDone:
		if b.connErr != nil {
			return connectorFinal{}, fmt.Errorf("connector exit: %w", b.connErr)
		}
	case <-time.After(90 * time.Second):
		return connectorFinal{}, errors.New("the connector did not stop within 90s")
	}
	raw, err := os.ReadFile(b.connLog)
	if err != nil {
		return connectorFinal{}, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		var f connectorFinal
		if json.Unmarshal([]byte(line), &f) == nil && f.Msg == "parley connector stopped" {
			return f, nil
		}
	}
	return connectorFinal{}, fmt.Errorf("no final line in the connector's log %s", b.connLog)
}

// connectorFinal is the connector's last log line.
type connectorFinal struct {
	Msg          string `json:"msg"`
	Activities   int64  `json:"activities"`
	Dropped      int64  `json:"dropped"`
	Acknowledged int64  `json:"acknowledged"`
	LastSeq      int64  `json:"lastSeq"`
}

// throughput produces the activities of whole conversations with the limit off and times
// them to the last Activity created.
func (b *bench) throughput(ctx context.Context) error {
	conversations := (b.cfg.activities + perConversation - 1) / perConversation
	want := float64(conversations * perConversation)
	cm0, err := b.connectorMetrics()
	if err != nil {
		return err
	}
	e0 := gatherEngine(b.reg)
	base := cm0["parley_connector_activities_produced_total"]
	mem := startSampler(b)
	cpu0 := cpuTimes()
	stopProfile, err := startProfile(b.cfg.cpuProfile)
	if err != nil {
		return err
	}

	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, b.cfg.clients)
	for range b.cfg.clients {
		wg.Go(func() {
			for next.Add(1) <= int64(conversations) {
				if err := converse(b.addr()); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	// The clients' end and the written counter are watched together: writes start long
	// before the clients are done. The poll is coarse on purpose: gathering the engine's
	// metrics is not free, and this process is the one measured.
	var written []point
	clientsDone := make(chan struct{}) // nil once seen
	go func() { wg.Wait(); close(clientsDone) }()
	var tClients, tProduced, tWritten time.Duration
	for tWritten == 0 {
		select {
		case err := <-errs:
			return fmt.Errorf("conversation: %w", err)
		case <-clientsDone:
			tClients, clientsDone = time.Since(start), nil
		case <-time.After(250 * time.Millisecond):
		}
		now := time.Since(start)
		ec := gatherEngine(b.reg)
		written = append(written, point{now, ec.written - e0.written})
		if tClients != 0 && tProduced == 0 {
			if cm, err := b.connectorMetrics(); err == nil && cm["parley_connector_activities_produced_total"]-base >= want {
				tProduced = now
			}
		}
		if ec.written-e0.written >= want && tProduced != 0 {
			tWritten = now
		}
		if ec.dropped > 0 {
			return fmt.Errorf("the engine dropped %v activities with the limit off", ec.dropped)
		}
		if now > 20*time.Minute {
			return fmt.Errorf("after %v: %v of %v activities written", now, ec.written-e0.written, want)
		}
	}
	stopProfile()
	cpu1 := cpuTimes()
	samples := mem.stop()
	e1 := gatherEngine(b.reg)
	cm1, err := b.connectorMetrics()
	if err != nil {
		return err
	}
	produced := cm1["parley_connector_activities_produced_total"] - base

	// Exact counts: the objects, the status, and the connector's own account.
	total := int64(cm1["parley_connector_activities_produced_total"])
	names, err := b.activityNames(ctx)
	if err != nil {
		return err
	}
	seqCheck := checkSeqs(names, total)
	var st v1alpha1.ActivityCounts
	statusErr := poll(30*time.Second, func() error {
		var ec v1alpha1.ExternalConnector
		if err := b.k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: connectorName}, &ec); err != nil {
			return err
		}
		st = ec.Status.Activities
		if st.Total != total || st.Recorded != total || st.Dropped != 0 {
			return fmt.Errorf("status %+v, want total = recorded = %d, dropped 0", st, total)
		}
		return nil
	})
	final, stopErr := b.stopConnector()

	fmt.Println()
	fmt.Printf("THROUGHPUT  %d conversations x %d = %.0f activities (write limit off)\n", conversations, perConversation, want)
	row("clients done (connector side)", "%v, %.0f activities/s produced", tClients.Round(time.Millisecond), produced/tClients.Seconds())
	row("connector counted them all", "%v", tProduced.Round(time.Millisecond))
	row("last Activity created", "%v after the first conversation began", tWritten.Round(time.Millisecond))
	row("end to end", "%.0f activities/s", want/tWritten.Seconds())
	row("steady write rate (10%..90%)", "%.0f Activities/s", steadyRate(written, want))
	var fifths []string
	for i := range 5 {
		fifths = append(fifths, fmt.Sprintf("%.0f", rateBetween(written, float64(i)*want/5, float64(i+1)*want/5)))
	}
	row("write rate by fifth of the run", "%s Activities/s", strings.Join(fifths, ", "))
	wd := e1.writeHist.minus(e0.writeHist)
	row("create latency (engine histogram)", "mean %.1f ms, p50 <= %s, p99 <= %s over %d creates",
		1000*wd.mean(), ms(wd.quantile(0.5)), ms(wd.quantile(0.99)), wd.count)
	writers := b.cfg.writers
	if writers == 0 {
		writers = 4
	}
	row("writers / mean latency", "%.0f/s (the rate %d creates in flight allow)", float64(writers)/wd.mean(), writers)
	row("engine write queue, peak", "%.0f", peakQueue(samples))
	row("dropped", "engine %v, connector %v", e1.dropped-e0.dropped, cm1["parley_connector_activities_dropped_total"])
	printCPU(cpu0, cpu1, tWritten)
	printMemory(samples)
	fmt.Println()
	check("Activity objects", seqCheck, fmt.Sprintf("%d, named %s-<run>-000001..%06d, each once", len(names), connectorName, total))
	check("status.activities", statusErr, fmt.Sprintf("total %d, recorded %d, dropped %d", st.Total, st.Recorded, st.Dropped))
	if stopErr != nil {
		check("connector stop", stopErr)
	} else {
		// Stopping adds the process's own last activities.
		var err error
		if final.Activities < total || final.LastSeq != final.Activities || final.Acknowledged != final.Activities || final.Dropped != 0 {
			err = fmt.Errorf("want at least %d activities, all acknowledged, none dropped", total)
		}
		check("connector's final counts", err, fmt.Sprintf("activities %d, lastSeq %d, acknowledged %d, dropped %d",
			final.Activities, final.LastSeq, final.Acknowledged, final.Dropped))
	}
	if seqCheck != nil || statusErr != nil || stopErr != nil {
		return errors.New("counts do not match")
	}
	return nil
}

// flood converses as fast as the clients can for the duration, under the write limit.
func (b *bench) flood(ctx context.Context) error {
	cm0, err := b.connectorMetrics()
	if err != nil {
		return err
	}
	e0 := gatherEngine(b.reg)
	mem := startSampler(b)
	cpu0 := cpuTimes()
	stopProfile, err := startProfile(b.cfg.cpuProfile)
	if err != nil {
		return err
	}

	start := time.Now()
	var conversations, failures atomic.Int64
	var lastFailure atomic.Value
	loadCtx, stopLoad := context.WithTimeout(ctx, b.cfg.duration)
	defer stopLoad()
	var wg sync.WaitGroup
	for range b.cfg.clients {
		wg.Go(func() {
			for loadCtx.Err() == nil {
				if err := converse(b.addr()); err != nil {
					failures.Add(1)
					lastFailure.Store(err.Error())
					continue
				}
				conversations.Add(1)
			}
		})
	}
	half := b.cfg.duration / 2
	var eHalf engineCounts
	var cmHalf map[string]float64
	halfDone := time.After(half)
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	fmt.Println()
	fmt.Printf("%-5s %10s %10s %9s %9s %9s %10s %9s %9s\n", "t", "produced", "conn.drop", "sent", "written", "eng.drop", "eng.queue", "heap MiB", "conn MiB")
	for loadCtx.Err() == nil {
		select {
		case <-halfDone:
			eHalf = gatherEngine(b.reg)
			cmHalf, _ = b.connectorMetrics()
		case <-tick.C:
			cm, _ := b.connectorMetrics()
			ec := gatherEngine(b.reg)
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Printf("%-5s %10.0f %10.0f %9.0f %9.0f %9.0f %10.0f %9.1f %9.1f\n", time.Since(start).Round(time.Second),
				cm["parley_connector_activities_produced_total"]-cm0["parley_connector_activities_produced_total"],
				cm["parley_connector_activities_dropped_total"], cm["parley_connector_engine_activities_sent_total"],
				ec.written-e0.written, ec.dropped, ec.queue, mib(ms.HeapInuse), float64(procKiB(b.conn.Process.Pid, "VmRSS"))/1024)
		case <-loadCtx.Done():
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProfile()
	e1 := gatherEngine(b.reg)
	cm1, err := b.connectorMetrics()
	if err != nil {
		return err
	}
	cpu1 := cpuTimes()
	connHWM := procKiB(b.conn.Process.Pid, "VmHWM")
	samples := mem.stop()

	// Stop the engine: what it has queued is abandoned (the connector would replay it to the
	// next engine), and the final counters go to the status. Then the counts can be compared.
	b.stopOperator()
	e2 := gatherEngine(b.reg)
	var ec v1alpha1.ExternalConnector
	if err := b.k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: connectorName}, &ec); err != nil {
		return err
	}
	st := ec.Status.Activities
	names, err := b.activityNames(ctx)
	if err != nil {
		return err
	}
	final, stopErr := b.stopConnector()

	produced := cm1["parley_connector_activities_produced_total"] - cm0["parley_connector_activities_produced_total"]
	connDropped := cm1["parley_connector_activities_dropped_total"] - cm0["parley_connector_activities_dropped_total"]
	written := e1.written - e0.written
	fmt.Println()
	fmt.Printf("FLOOD  %v of traffic from %d clients, engine limit %g/s burst %d, queue %d\n", elapsed.Round(time.Millisecond),
		b.cfg.clients, b.cfg.qps, b.cfg.burst, b.cfg.queue)
	row("conversations", "%d (%.0f/s), %d failed", conversations.Load(), float64(conversations.Load())/elapsed.Seconds(), failures.Load())
	if f := lastFailure.Load(); f != nil {
		row("last failure", "%s", f)
	}
	row("produced (connector)", "%.0f (%.0f/s)", produced, produced/elapsed.Seconds())
	row("received by the engine", "%.0f (%.0f/s)", e1.received-e0.received, (e1.received-e0.received)/elapsed.Seconds())
	row("written", "%.0f (%.1f/s overall; %.1f/s in the second half)", written, written/elapsed.Seconds(),
		(e1.written-eHalf.written)/(elapsed-half).Seconds())
	row("dropped by the engine (queue full)", "%.0f", e1.dropped-e0.dropped)
	row("dropped by the connector (buffers full)", "%.0f (%.1f%% of produced)", connDropped, 100*connDropped/produced)
	if cmHalf != nil {
		p := cm1["parley_connector_activities_produced_total"] - cmHalf["parley_connector_activities_produced_total"]
		d := cm1["parley_connector_activities_dropped_total"] - cmHalf["parley_connector_activities_dropped_total"]
		row("  in the second half", "%.1f%% of produced dropped", 100*d/p)
	}
	row("connector buffer (unacked) at the end", "%.0f activities", cm1["parley_connector_engine_buffered_activities"])
	row("connector reconnects to the engine", "%.0f", cm1["parley_connector_engine_reconnects_total"])
	wd := e1.writeHist.minus(e0.writeHist)
	row("create latency (engine histogram)", "mean %.1f ms, p99 <= %s", 1000*wd.mean(), ms(wd.quantile(0.99)))
	row("engine write queue", "peak %.0f, at the end %.0f", peakQueue(samples), e1.queue)
	printCPU(cpu0, cpu1, elapsed)
	printMemory(samples)
	row("connector process", "peak VmHWM %.1f MiB", float64(connHWM)/1024)
	fmt.Println()

	// After the engine stopped: status = the engine's counters; objects = written.
	var errCounts error
	if st.Total != int64(e2.received) || st.Recorded != int64(e2.written) || st.Dropped != int64(e2.dropped) {
		errCounts = fmt.Errorf("engine counted received %v, written %v, dropped %v", e2.received, e2.written, e2.dropped)
	}
	check("status.activities after the engine stopped", errCounts, fmt.Sprintf("total %d, recorded %d, dropped %d", st.Total, st.Recorded, st.Dropped))
	var errObjects error
	if int64(len(names)) != st.Recorded {
		errObjects = fmt.Errorf("%d Activity objects, status says %d recorded", len(names), st.Recorded)
	}
	check("Activity objects = recorded", errObjects, fmt.Sprintf("%d objects", len(names)))
	if stopErr != nil {
		check("connector stop", stopErr)
	} else {
		// Produced = numbered (handed to the uplink) + dropped + what was still in the
		// register when the end timed out: the final line counts those in neither.
		var err error
		left := final.Activities - final.LastSeq - final.Dropped
		if left < 0 || st.Total > final.LastSeq || final.Acknowledged > st.Total {
			err = errors.New("acknowledged <= engine received <= lastSeq <= activities - dropped does not hold")
		}
		check("connector's final line", err, fmt.Sprintf("activities %d = lastSeq %d + dropped %d + %d neither; acknowledged %d; engine received %d",
			final.Activities, final.LastSeq, final.Dropped, left, final.Acknowledged, st.Total))
	}
	return nil
}

// startProfile starts a CPU profile into path, if set; the returned function ends it.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

// converse holds one complete conversation: greeting, PING, QUIT, the connector's close.
// The client then resets its side (SO_LINGER 0), so that no socket lingers in TIME_WAIT and
// loopback's ephemeral ports last.
func converse(addr string) error { return conversePings(addr, 1) }

// conversePings holds one conversation: greeting, pings PINGs, QUIT.
func conversePings(addr string, pings int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer func() {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReaderSize(c, 256)
	type step struct{ say, want string }
	steps := []step{{"", "+OK ready\r\n"}}
	for range pings {
		steps = append(steps, step{"PING\r\n", "+PONG\r\n"})
	}
	for _, step := range append(steps, step{"QUIT\r\n", "+OK bye\r\n"}) {
		if step.say != "" {
			if _, err := io.WriteString(c, step.say); err != nil {
				return err
			}
		}
		line, err := r.ReadString('\n')
		if err != nil || line != step.want {
			return fmt.Errorf("got %q (%v), want %q", line, err, step.want)
		}
	}
	// The connector ends the conversation (Ended is recorded) and closes.
	if _, err := r.ReadByte(); err != io.EOF {
		return fmt.Errorf("after the ending: %v, want EOF", err)
	}
	return nil
}

// activityNames lists the connector's Activities' names (metadata only).
func (b *bench) activityNames(ctx context.Context) ([]string, error) {
	var list metav1.PartialObjectMetadataList
	list.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("ActivityList"))
	if err := b.k8s.List(ctx, &list, client.InNamespace(namespace), client.MatchingLabels{v1alpha1.LabelConnector: connectorName}); err != nil {
		return nil, err
	}
	names := make([]string, len(list.Items))
	for i, it := range list.Items {
		names[i] = it.Name
	}
	return names, nil
}

// checkSeqs checks that the names are <connector>-<run>-<seq> of one run, seq 1..want, each once.
func checkSeqs(names []string, want int64) error {
	runs := map[string]bool{}
	seqs := make([]int64, 0, len(names))
	for _, n := range names {
		parts := strings.Split(strings.TrimPrefix(n, connectorName+"-"), "-")
		if len(parts) != 2 {
			return fmt.Errorf("name %q", n)
		}
		s, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil {
			return fmt.Errorf("name %q: %w", n, err)
		}
		runs[parts[0]] = true
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	if len(runs) != 1 || int64(len(seqs)) != want || seqs[0] != 1 || seqs[len(seqs)-1] != want ||
		len(slices.Compact(seqs)) != len(names) {
		return fmt.Errorf("%d objects of %d run(s), want exactly seq 1..%d of one", len(names), len(runs), want)
	}
	return nil
}

// engineCounts are the engine's metrics, summed over connectors.
type engineCounts struct {
	received, written, dropped, queue float64
	writeHist                         hist
}

func gatherEngine(reg *prometheus.Registry) engineCounts {
	var c engineCounts
	mfs, err := reg.Gather()
	if err != nil {
		logf("gather engine metrics: %v", err)
		return c
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "parley_engine_activities_received_total":
				c.received += m.GetCounter().GetValue()
			case "parley_engine_activities_written_total":
				c.written += m.GetCounter().GetValue()
			case "parley_engine_activities_dropped_total":
				c.dropped += m.GetCounter().GetValue()
			case "parley_engine_write_queue_length":
				c.queue = m.GetGauge().GetValue()
			case "parley_engine_write_duration_seconds":
				h := m.GetHistogram()
				c.writeHist.count, c.writeHist.sum = h.GetSampleCount(), h.GetSampleSum()
				for _, bk := range h.GetBucket() {
					c.writeHist.bounds = append(c.writeHist.bounds, bk.GetUpperBound())
					c.writeHist.cumulative = append(c.writeHist.cumulative, bk.GetCumulativeCount())
				}
			}
		}
	}
	return c
}

// hist is a cumulative histogram.
type hist struct {
	count      uint64
	sum        float64
	bounds     []float64
	cumulative []uint64
}

func (h hist) minus(o hist) hist {
	d := hist{count: h.count - o.count, sum: h.sum - o.sum, bounds: h.bounds}
	for i := range h.cumulative {
		c := h.cumulative[i]
		if i < len(o.cumulative) {
			c -= o.cumulative[i]
		}
		d.cumulative = append(d.cumulative, c)
	}
	return d
}

func (h hist) mean() float64 {
	if h.count == 0 {
		return math.NaN()
	}
	return h.sum / float64(h.count)
}

// quantile is the upper bound of the bucket holding the q-quantile (+Inf past the last).
func (h hist) quantile(q float64) float64 {
	rank := uint64(math.Ceil(q * float64(h.count)))
	for i, c := range h.cumulative {
		if c >= rank {
			return h.bounds[i]
		}
	}
	return math.Inf(1)
}

func ms(s float64) string {
	if math.IsInf(s, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(1000*s, 'f', -1, 64) + " ms"
}

// connectorMetrics scrapes the connector's metrics endpoint (counters and gauges without labels).
func (b *bench) connectorMetrics() (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(b.metrics)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "parley_") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out, sc.Err()
}

type point struct {
	t time.Duration
	v float64
}

// steadyRate is the rate between 10% and 90% of total in a rising series.
func steadyRate(ps []point, total float64) float64 { return rateBetween(ps, 0.1*total, 0.9*total) }

// rateBetween is the rate from the first point at or over from to the first at or over to.
func rateBetween(ps []point, from, to float64) float64 {
	var t0, t1 time.Duration
	var v0, v1 float64
	found0, found1 := false, false
	for _, p := range ps {
		if !found0 && p.v >= from {
			t0, v0, found0 = p.t, p.v, true
		}
		if !found1 && p.v >= to {
			t1, v1, found1 = p.t, p.v, true
		}
	}
	if !found0 || !found1 || t1 <= t0 {
		return math.NaN()
	}
	return (v1 - v0) / (t1 - t0).Seconds()
}

// memSample is this process's memory and the engine's queue, once a second.
type memSample struct {
	heapInuse, heapAlloc, sys uint64
	// live is the heap the last GC found reachable: what is retained, without garbage.
	live         uint64
	rss, connRSS int64
	queue        float64
}

type sampler struct {
	stopCh  chan struct{}
	done    chan struct{}
	samples []memSample
}

func startSampler(b *bench) *sampler {
	s := &sampler{stopCh: make(chan struct{}), done: make(chan struct{})}
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	take := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		metrics.Read(live)
		s.samples = append(s.samples, memSample{heapInuse: ms.HeapInuse, heapAlloc: ms.HeapAlloc, sys: ms.Sys, live: live[0].Value.Uint64(),
			rss: procKiB(os.Getpid(), "VmRSS"), connRSS: procKiB(b.conn.Process.Pid, "VmRSS"), queue: gatherEngine(b.reg).queue})
	}
	take()
	go func() {
		defer close(s.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.stopCh:
				take()
				return
			case <-t.C:
				take()
			}
		}
	}()
	return s
}

func (s *sampler) stop() []memSample {
	close(s.stopCh)
	<-s.done
	return s.samples
}

func peakQueue(ss []memSample) float64 {
	var p float64
	for _, s := range ss {
		p = max(p, s.queue)
	}
	return p
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// printMemory reports the process's memory before the load, at its peak, and its median over
// the second half of the samples (steady state).
func printMemory(ss []memSample) {
	if len(ss) == 0 {
		return
	}
	peak := func(f func(memSample) float64) float64 {
		p := 0.0
		for _, s := range ss {
			p = max(p, f(s))
		}
		return p
	}
	steady := func(f func(memSample) float64) float64 {
		var vs []float64
		for _, s := range ss[len(ss)/2:] {
			vs = append(vs, f(s))
		}
		slices.Sort(vs)
		return vs[len(vs)/2]
	}
	heap := func(s memSample) float64 { return mib(s.heapInuse) }
	live := func(s memSample) float64 { return mib(s.live) }
	sys := func(s memSample) float64 { return mib(s.sys) }
	rss := func(s memSample) float64 { return float64(s.rss) / 1024 }
	conn := func(s memSample) float64 { return float64(s.connRSS) / 1024 }
	row("operator process HeapInuse", "before %.1f MiB, peak %.1f, steady %.1f (median of the 2nd half)", heap(ss[0]), peak(heap), steady(heap))
	row("operator process live heap (after GC)", "before %.1f MiB, peak %.1f, steady %.1f", live(ss[0]), peak(live), steady(live))
	row("operator process Sys (from the OS)", "before %.1f MiB, peak %.1f, steady %.1f", sys(ss[0]), peak(sys), steady(sys))
	row("operator process VmRSS", "before %.1f MiB, peak %.1f, steady %.1f (sampled each second)", rss(ss[0]), peak(rss), steady(rss))
	row("connector process VmRSS", "before %.1f MiB, peak %.1f, steady %.1f", conn(ss[0]), peak(conn), steady(conn))
}

func row(what, format string, args ...any) {
	fmt.Printf("  %-40s %s\n", what, fmt.Sprintf(format, args...))
}

func check(what string, err error, detail ...string) {
	d := strings.Join(detail, " ")
	if err != nil {
		fmt.Printf("  CHECK %-34s FAILED: %v %s\n", what, err, d)
		return
	}
	fmt.Printf("  CHECK %-34s ok: %s\n", what, d)
}

// clockTicks is USER_HZ, the unit of /proc's CPU times on Linux.
const clockTicks = 100

// machine is the key of the whole machine's busy CPU seconds in cpuTimes.
const machine = "machine"

// cpuTimes are the CPU seconds (user+system) of this process and of its children (etcd,
// kube-apiserver, the connector), by command name.
func cpuTimes() map[string]float64 {
	out := map[string]float64{}
	self := os.Getpid()
	if comm, _, t, ok := procStat("self"); ok {
		out["this process ("+comm+")"] = t
	}
	if raw, err := os.ReadFile("/proc/stat"); err == nil {
		// cpu  user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait.
		f := strings.Fields(strings.SplitN(string(raw), "\n", 2)[0])
		for i, v := range f[1:] {
			if i == 3 || i == 4 {
				continue
			}
			t, _ := strconv.ParseFloat(v, 64)
			out[machine] += t / clockTicks
		}
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if comm, ppid, t, ok := procStat(e.Name()); ok && ppid == self {
			out[comm] += t
		}
	}
	return out
}

// procStat reads a process's command, parent and CPU seconds from /proc/<pid>/stat.
func procStat(pid string) (comm string, ppid int, cpu float64, ok bool) {
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "", 0, 0, false
	}
	s := string(raw)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", 0, 0, false
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 13 {
		return "", 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return s[open+1 : end], ppid, (utime + stime) / clockTicks, true
}

func printCPU(before, after map[string]float64, wall time.Duration) {
	var names []string
	for n := range after {
		names = append(names, n)
	}
	slices.Sort(names)
	var parts []string
	total := 0.0
	for _, n := range names {
		if n == machine {
			continue
		}
		d := after[n] - before[n]
		total += d
		parts = append(parts, fmt.Sprintf("%s %.1fs", n, d))
	}
	row("CPU seconds in the window", "%s; total %.1fs of %.1fs available on %d cores", strings.Join(parts, ", "),
		total, wall.Seconds()*float64(runtime.NumCPU()), runtime.NumCPU())
	row("CPU seconds of other work on the machine", "%.1fs", after[machine]-before[machine]-total)
}

func procKiB(pid int, field string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, field+":") {
			v, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return v
		}
	}
	return 0
}

func poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
