package controllers_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/controllers"
	"github.com/parley-dev/parley/internal/envtestutil"
)

// The suite runs a real kube-apiserver and etcd (envtest) with the CRDs of config/crd, and
// the operator's reconcilers in a manager against it. The manager runs as a user bound to
// the generated ClusterRole of config/rbac only, not as an administrator, so every test
// also shows that the RBAC markers grant what the reconcilers need.
var (
	k8s      client.Client // direct (uncached) administrator client for the tests
	operator client.Client // the operator's own identity, for RBAC checks
	cfg      *rest.Config
	testEnv  *envtest.Environment
	scheme   = runtime.NewScheme()
)

// wait bounds how long a test waits for the reconcilers; generous for loaded CI machines.
const wait = 30 * time.Second

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
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	var err error
	if cfg, err = testEnv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "start envtest:", err)
		return 1
	}
	defer func() { _ = testEnv.Stop() }()
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		panic(err)
	}
	operatorCfg, err := envtestutil.OperatorConfig(context.Background(), testEnv, k8s, filepath.Join("..", "config", "rbac", "role.yaml"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "operator identity:", err)
		return 1
	}
	if operator, err = client.New(operatorCfg, client.Options{Scheme: scheme}); err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := startManager(ctx, operatorCfg); err != nil {
		fmt.Fprintln(os.Stderr, "start the manager:", err)
		return 1
	}
	return m.Run()
}

// startManager runs the operator's reconcilers, as `parley operator` does, against cfg.
func startManager(ctx context.Context, cfg *rest.Config) error {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   controllers.CacheOptions(),
	})
	if err != nil {
		return err
	}
	if err := controllers.Setup(mgr, testDefaults); err != nil {
		return err
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	return nil
}

var testDefaults = controllers.Defaults{ConnectorImage: "parley:test", EngineAddress: "parley-engine.parley-system:9443"}

// namespace makes a fresh namespace for one test.
func namespace(t *testing.T) string { t.Helper(); return envtestutil.Namespace(t, k8s, "t-") }

// eventually polls cond until it returns nil or the wait runs out.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	envtestutil.Eventually(t, wait, what, cond)
}
