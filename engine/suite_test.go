package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/controllers"
	"github.com/parley-dev/parley/engine"
	"github.com/parley-dev/parley/internal/envtestutil"
	"github.com/parley-dev/parley/internal/freeport"
)

// The suite runs a real kube-apiserver and etcd (envtest), the operator's reconcilers and
// engine in a manager (as `parley operator` assembles them, under the generated RBAC only),
// and real `parley connector` processes built from this tree that dial the engine over TLS.
// Envtest has no kubelet: the tests start the connector processes the Deployments describe.
var (
	k8s        client.Client
	testEnv    *envtest.Environment
	scheme     = runtime.NewScheme()
	operator   *rest.Config
	mainEngine *engine.Engine
	// mainMetrics holds mainEngine's metrics.
	mainMetrics *prometheus.Registry
	parleyBin   string
)

// wait bounds how long a test waits for something to happen; generous for loaded CI.
const wait = 45 * time.Second

// engineNamespace holds the engine's certificate Secret.
const engineNamespace = "parley-system"

func TestMain(m *testing.M) {
	envtestutil.RequireAssets()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	envtestutil.SetLogger()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	dir, err := os.MkdirTemp("", "parley-engine-test")
	if err != nil {
		panic(err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	parleyBin = filepath.Join(dir, "parley")
	build := exec.Command("go", "build", "-o", parleyBin, "../cmd/parley")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build parley:", err)
		return 1
	}

	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := testEnv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start envtest:", err)
		return 1
	}
	defer func() { _ = testEnv.Stop() }()
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: engineNamespace}}); err != nil {
		panic(err)
	}
	if operator, err = envtestutil.OperatorConfig(ctx, testEnv, k8s, filepath.Join("..", "config", "rbac", "role.yaml")); err != nil {
		fmt.Fprintln(os.Stderr, "operator identity:", err)
		return 1
	}
	mainMetrics = prometheus.NewRegistry()
	e, err := startOperator(ctx, engine.Options{ActivityQPS: 500, ActivityBurst: 500, Registry: mainMetrics}, true)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start the operator:", err)
		return 1
	}
	mainEngine = e
	return m.Run()
}

// startOperator runs a manager with the engine on a free loopback port and, with
// controllers, the reconcilers too, until ctx is cancelled. It returns once the engine
// listens, on opts.BindAddress if set.
func startOperator(ctx context.Context, opts engine.Options, withControllers bool) (*engine.Engine, error) {
	return startOperatorLogging(ctx, opts, withControllers, nil)
}

// startOperatorLogging is startOperator with the manager's log, at info level and in JSON as
// `parley operator` writes it, going to log (nil: the suite's logger).
func startOperatorLogging(ctx context.Context, opts engine.Options, withControllers bool, log io.Writer) (*engine.Engine, error) {
	if opts.BindAddress == "" {
		port, err := freeport.Pick()
		if err != nil {
			return nil, err
		}
		opts.BindAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	mo := ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  controllers.CacheOptions(),
	}
	if log != nil {
		mo.Logger = zap.New(zap.WriteTo(log), zap.UseDevMode(false))
	}
	mgr, err := ctrl.NewManager(operator, mo)
	if err != nil {
		return nil, err
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.StatusInterval == 0 {
		opts.StatusInterval = 500 * time.Millisecond
	}
	// Several engines share this API server, each with connectors of its own: a new
	// leader's sweep of EngineConnected would take the others' pods for gone. The tests of
	// leadership turn it on.
	if opts.ReconnectGrace == 0 {
		opts.ReconnectGrace = -1
	}
	e, err := engine.Setup(ctx, mgr, engine.Config{Options: opts, Address: opts.BindAddress, SecretName: "parley-engine-tls", SecretNamespace: engineNamespace})
	if err != nil {
		return nil, err
	}
	if withControllers {
		d := controllers.Defaults{ConnectorImage: "parley:test", EngineAddress: e.Address(), Ender: e, EngineCA: e.CA}
		if err := controllers.Setup(mgr, d); err != nil {
			return nil, err
		}
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	select {
	case <-e.Ready():
		return e, nil
	case <-time.After(wait):
		return nil, fmt.Errorf("the engine did not listen within %s", wait)
	}
}

// namespace makes a fresh namespace for one test.
func namespace(t *testing.T) string { t.Helper(); return envtestutil.Namespace(t, k8s, "t-") }

// eventually polls cond until it returns nil or the wait runs out.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	envtestutil.Eventually(t, wait, what, cond)
}

// connectorProcess is a running `parley connector`.
type connectorProcess struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	output bytes.Buffer
	done   chan struct{}
	err    error
}

func (p *connectorProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.Write(b)
}

func (p *connectorProcess) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

// wait returns the exit error once the process has exited, or fails the test.
func (p *connectorProcess) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(wait):
		t.Fatalf("the connector did not exit within %s; its logs:\n%s", wait, p.logs())
		return nil
	}
}

func (p *connectorProcess) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// credentials are the files a connector pod gets from its engine Secret.
type connectorCreds struct{ token, ca string }

// secretFiles waits for the connector's engine Secret (token and CA) and writes its keys
// into files, as the pod's Secret volume would.
func secretFiles(t *testing.T, ns, name string) connectorCreds {
	t.Helper()
	var sec corev1.Secret
	eventually(t, "the engine Secret with token and CA", func() error {
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: v1alpha1.EngineSecretName(name)}, &sec); err != nil {
			return err
		}
		if len(sec.Data[v1alpha1.TokenKey]) == 0 || len(sec.Data[v1alpha1.EngineCAKey]) == 0 {
			return fmt.Errorf("keys %v", keys(sec.Data))
		}
		return nil
	})
	dir := t.TempDir()
	c := connectorCreds{token: filepath.Join(dir, "token"), ca: filepath.Join(dir, "ca.crt")}
	for file, key := range map[string]string{c.token: v1alpha1.TokenKey, c.ca: v1alpha1.EngineCAKey} {
		if err := os.WriteFile(file, sec.Data[key], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// startConnector runs `parley connector` for ns/name against the engine at address with
// the given credentials, as a connector pod would; extra flags are appended.
func startConnector(t *testing.T, ns, name, address string, creds connectorCreds, extra ...string) *connectorProcess {
	t.Helper()
	args := append([]string{"connector",
		"--engine-token-file", creds.token, "--engine-ca-file", creds.ca,
		"--metrics-bind-address", "0", "--config-timeout", "30s", "--zap-log-level", "debug"}, extra...)
	p := &connectorProcess{cmd: exec.Command(parleyBin, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(),
		v1alpha1.EnvConnector+"="+name, v1alpha1.EnvNamespace+"="+ns,
		v1alpha1.EnvEngineAddress+"="+address, v1alpha1.EnvPodName+"="+name+"-pod-"+strconv.Itoa(int(time.Now().UnixNano()%100000)))
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("connector %s/%s logs:\n%s", ns, name, p.logs())
		}
	})
	return p
}

// metric is the value of the engine metric name for ns/connector in reg (0 when absent).
func metric(t *testing.T, reg *prometheus.Registry, name, ns, connector string) float64 {
	t.Helper()
	v, _ := metricSeries(t, reg, name, ns, connector)
	return v
}

// metricSeries is metric, and whether reg has a series of it for ns/connector at all.
func metricSeries(t *testing.T, reg *prometheus.Registry, name, ns, connector string) (float64, bool) {
	t.Helper()
	found := false
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == ns && labels["connector"] == connector {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
				found = true
			}
		}
	}
	return sum, found
}
