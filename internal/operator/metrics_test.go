package operator_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/parley-dev/parley/internal/envtestutil"
	"github.com/parley-dev/parley/internal/freeport"
	"github.com/parley-dev/parley/internal/operator"
)

// The suite runs a real kube-apiserver and etcd (envtest). The operator's manager runs as
// the operator's least-privilege identity (the generated ClusterRole only), so the tests
// also show that the RBAC markers grant what the secure metrics endpoint needs: TokenReviews
// and SubjectAccessReviews. envtest's API server has a service-account issuer, so the
// scrapers are real ServiceAccounts with tokens from the TokenRequest API.
var (
	admin       client.Client
	clientset   *kubernetes.Clientset
	operatorCfg *rest.Config
)

func TestMain(m *testing.M) {
	envtestutil.RequireAssets()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	envtestutil.SetLogger()
	// The CRDs, for the reconcilers the shared-memory tests run.
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start envtest:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	if admin, err = client.New(cfg, client.Options{Scheme: testScheme()}); err != nil {
		panic(err)
	}
	if clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		panic(err)
	}
	if operatorCfg, err = envtestutil.OperatorConfig(context.Background(), env, admin, filepath.Join("..", "..", "config", "rbac", "role.yaml")); err != nil {
		fmt.Fprintln(os.Stderr, "operator identity:", err)
		return 1
	}
	return m.Run()
}

// startMetrics runs a manager with the operator's metrics server options on a free loopback
// port until the test ends, and returns its address.
func startMetrics(t *testing.T, secure bool) string {
	t.Helper()
	// Not "listen on :0 and close": the manager binds later, and an ephemeral port may be
	// taken in between by any connection made on the machine.
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freeport.T(t)))
	mgr, err := ctrl.NewManager(operatorCfg, ctrl.Options{
		Metrics:                operator.MetricsServerOptions(addr, secure, ""),
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-stopped })
	return addr
}

// scraper is an HTTP client that does not verify the server's certificate: the manager's
// is self-signed, made at start, as in the chart's default (insecureSkipVerify).
var scraper = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
	TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
}}

// get fetches url with the bearer token (none if empty) and returns the status and body;
// it waits for the server to listen, not for an answer.
func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	var code int
	var body string
	envtestutil.Eventually(t, 30*time.Second, "GET "+url, func() error {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := scraper.Do(req)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		code, body = resp.StatusCode, string(b)
		return err
	})
	return code, body
}

// serviceAccountToken makes a ServiceAccount in ns and returns a token the API server issues
// for it (TokenRequest), as a Prometheus pod's projected token would be.
func serviceAccountToken(t *testing.T, ns, name string) string {
	t.Helper()
	ctx := context.Background()
	if err := admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
		t.Fatal(err)
	}
	tr, err := clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

// metricsReaderRule is the rule of the chart's <fullname>-metrics-reader ClusterRole (the
// chart's tests check that it renders exactly this).
var metricsReaderRule = rbacv1.PolicyRule{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}

// Secure metrics: HTTPS only; no token is refused (401), a token whose user may not get
// /metrics is refused (403), a ServiceAccount bound to the metrics-reader rule reads them.
func TestSecureMetricsNeedAnAuthorizedToken(t *testing.T) {
	addr := startMetrics(t, true)
	ctx := context.Background()
	ns := envtestutil.Namespace(t, admin, "metrics-")
	reader := serviceAccountToken(t, ns, "prometheus")
	stranger := serviceAccountToken(t, ns, "stranger")
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ns + "-metrics-reader"}, Rules: []rbacv1.PolicyRule{metricsReaderRule}}
	if err := admin.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	if err := admin.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-metrics-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "prometheus"}},
	}); err != nil {
		t.Fatal(err)
	}

	url := "https://" + addr + "/metrics"
	if code, body := get(t, url, ""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d %q, want 401", code, body)
	}
	// A token the API server cannot review: controller-runtime's filter answers 500
	// ("Authentication failed"), not 401; refused either way.
	if code, body := get(t, url, "not-a-token"); code == http.StatusOK {
		t.Errorf("a token the API server does not know: %d %q, want a refusal", code, body)
	}
	if code, body := get(t, url, stranger); code != http.StatusForbidden {
		t.Errorf("a ServiceAccount without the metrics-reader rule: %d %q, want 403", code, body)
	}
	code, body := get(t, url, reader)
	if code != http.StatusOK || !strings.Contains(body, "# TYPE ") {
		t.Errorf("the metrics reader: %d, want 200 with metrics:\n%.300s", code, body)
	}
	// Plain HTTP on the same port is not served (the TLS server answers 400 or hangs up).
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+reader)
	if resp, err := scraper.Do(req); err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP: 200, want the TLS server's refusal")
		}
	}
}

// --metrics-secure=false: plain HTTP, no token asked for.
func TestInsecureMetricsArePlainHTTP(t *testing.T) {
	addr := startMetrics(t, false)
	if code, body := get(t, "http://"+addr+"/metrics", ""); code != http.StatusOK || !strings.Contains(body, "# TYPE ") {
		t.Errorf("plain HTTP without a token: %d, want 200 with metrics:\n%.300s", code, body)
	}
}
