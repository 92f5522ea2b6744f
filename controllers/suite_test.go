package controllers_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"go.uber.org/zap/zapcore"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/controllers"
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
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: these tests need a real kube-apiserver and etcd.\n"+
			"Run `make test`, or: export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)")
		os.Exit(1)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	level := zapcore.ErrorLevel
	if os.Getenv("PARLEY_TEST_VERBOSE") != "" {
		level = zapcore.DebugLevel
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(level)))
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
	operatorCfg, err := operatorIdentity(context.Background())
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

// operatorUser is the identity the manager runs as.
const operatorUser = "system:serviceaccount:parley-system:parley-operator"

// operatorIdentity binds the generated ClusterRole to operatorUser and returns its config.
func operatorIdentity(ctx context.Context) (*rest.Config, error) {
	raw, err := os.ReadFile(filepath.Join("..", "config", "rbac", "role.yaml"))
	if err != nil {
		return nil, err
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(raw, &role); err != nil {
		return nil, fmt.Errorf("config/rbac/role.yaml: %w", err)
	}
	if err := k8s.Create(ctx, &role); err != nil {
		return nil, err
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "parley-operator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: operatorUser}},
	}
	if err := k8s.Create(ctx, binding); err != nil {
		return nil, err
	}
	user, err := testEnv.AddUser(envtest.User{Name: operatorUser}, nil)
	if err != nil {
		return nil, err
	}
	return user.Config(), nil
}

var testDefaults = controllers.Defaults{ConnectorImage: "parley:test", EngineAddress: "parley-engine.parley-system:9443"}

// namespace makes a fresh namespace for one test.
func namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// eventually polls cond until it returns nil or the wait runs out.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: still not true after %v: %v", what, wait, err)
}
