package admission

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/envtestutil"
	"github.com/parley-dev/parley/internal/freeport"
)

// The suite runs a real kube-apiserver and etcd with the webhooks `make manifests` generates
// installed, and the webhook served in-process by a manager running as the operator's
// least-privilege identity: the API server itself calls it, over TLS verified with the CA
// the operator injected.
var (
	scheme = runtime.NewScheme()
	// admin is an administrator's client; it goes through admission like any other.
	admin    client.Client
	adminCfg *rest.Config
	// probeAddr serves the manager's /readyz.
	probeAddr string
	// systemNS holds the webhook's Secret, as the operator's namespace does.
	systemNS = "parley-system"
)

const (
	secretName = "parley-webhook-tls"
	// bypassLabel lets a test store an object without the webhook, as if it had been
	// stored before the webhook was installed (the suite's configuration skips objects
	// carrying it).
	bypassLabel = "test.parley.io/bypass-webhook"
	wait        = 30 * time.Second
)

func TestMain(m *testing.M) {
	envtestutil.RequireAssets()
	os.Exit(run(m))
}

// suiteConfiguration is the generated configuration as the chart installs it, with the
// strictest failurePolicy, so that a webhook the API server cannot reach (or whose
// certificate it does not trust) fails requests instead of letting them through unseen.
func suiteConfiguration() (*admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	raw, err := os.ReadFile(filepath.Join("..", "config", "webhook", "manifests.yaml"))
	if err != nil {
		return nil, err
	}
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(raw, &vwc); err != nil {
		return nil, fmt.Errorf("config/webhook/manifests.yaml: %w", err)
	}
	vwc.Name = ConfigurationName
	for i := range vwc.Webhooks {
		w := &vwc.Webhooks[i]
		w.FailurePolicy = ptr.To(admissionregistrationv1.Fail)
		w.MatchConditions = []admissionregistrationv1.MatchCondition{{Name: "skip-deleting-objects", Expression: SkipDeletingObjects}}
		w.ObjectSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: bypassLabel, Operator: metav1.LabelSelectorOpDoesNotExist}}}
	}
	return &vwc, nil
}

func run(m *testing.M) int {
	envtestutil.SetLogger()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	vwc, err := suiteConfiguration()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{ValidatingWebhooks: []*admissionregistrationv1.ValidatingWebhookConfiguration{vwc}},
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start envtest:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	adminCfg = cfg
	if admin, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: systemNS}}); err != nil {
		panic(err)
	}
	operatorCfg, err := envtestutil.OperatorConfig(ctx, env, admin, filepath.Join("..", "config", "rbac", "role.yaml"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "operator identity:", err)
		return 1
	}
	probePort, err := freeport.Pick()
	if err != nil {
		panic(err)
	}
	probeAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(probePort))
	vwcObj, byObject := CacheByObject("")
	mgr, err := ctrl.NewManager(operatorCfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: probeAddr,
		Cache:                  cache.Options{ByObject: map[client.Object]cache.ByObject{vwcObj: byObject}},
	})
	if err != nil {
		panic(err)
	}
	wo := env.WebhookInstallOptions
	if err := Setup(mgr, Options{
		BindAddress:     net.JoinHostPort(wo.LocalServingHost, strconv.Itoa(wo.LocalServingPort)),
		SecretNamespace: systemNS, SecretName: secretName,
		// envtest points the configuration at this address.
		Hosts: []string{wo.LocalServingHost},
	}); err != nil {
		fmt.Fprintln(os.Stderr, "webhook setup:", err)
		return 1
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	defer wg.Wait()
	defer cancel()
	if err := waitInForce(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "the webhook never came into force:", err)
		return 1
	}
	return m.Run()
}

// waitInForce waits until the API server calls the webhook with the injected CA: a dry run
// of rules that do not compile is refused by it. Until then requests fail (the API server
// does not trust envtest's own CA any more, or has not seen the new bundle yet).
func waitInForce(ctx context.Context) error {
	deadline := time.Now().Add(wait)
	var last error
	for time.Now().Before(deadline) {
		cr := brokenObject(systemNS, "probe")
		err := admin.Create(ctx, cr, client.DryRunAll)
		if err != nil && isWebhookRefusal(err) {
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	if last == nil {
		last = errors.New("the API server accepted rules that do not compile")
	}
	return last
}
