// Package envtestutil holds what the envtest suites (controllers, engine, engine/pki) share:
// the check for the kube-apiserver and etcd binaries, the test logger, the operator's
// least-privilege identity, fresh namespaces and polling.
package envtestutil

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"
)

// ShortSkipReason is what an envtest suite prints when `go test -short` skips it.
const ShortSkipReason = "skipping: envtest suite needs a real kube-apiserver and etcd (-short)"

// RequireAssets is the first call of an envtest suite's TestMain. Under `go test -short` (the
// quick loop) it ends the test binary successfully, printing ShortSkipReason, before anything
// is started. Otherwise it exits the test binary when KUBEBUILDER_ASSETS is not set: the
// suite needs a real kube-apiserver and etcd, and must fail loudly rather than skip.
func RequireAssets() {
	// TestMain runs before the testing package parses its flags; -short is one of them.
	if !flag.Parsed() {
		flag.Parse()
	}
	if testing.Short() {
		fmt.Println(ShortSkipReason)
		os.Exit(0)
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: these tests need a real kube-apiserver and etcd.\n"+
			"Run `make test`, or: export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)")
		os.Exit(1)
	}
}

// SetLogger logs errors only, or everything when PARLEY_TEST_VERBOSE is set.
func SetLogger() {
	level := zapcore.ErrorLevel
	if os.Getenv("PARLEY_TEST_VERBOSE") != "" {
		level = zapcore.DebugLevel
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(level)))
}

// OperatorUser is the identity the operator runs as in the suites.
const OperatorUser = "system:serviceaccount:parley-system:parley-operator"

// OperatorConfig binds the generated ClusterRole in rolePath to OperatorUser and returns that
// user's config: a manager running with it proves the role grants what the operator needs.
func OperatorConfig(ctx context.Context, env *envtest.Environment, admin client.Client, rolePath string) (*rest.Config, error) {
	raw, err := os.ReadFile(rolePath)
	if err != nil {
		return nil, err
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(raw, &role); err != nil {
		return nil, fmt.Errorf("%s: %w", rolePath, err)
	}
	if err := admin.Create(ctx, &role); err != nil {
		return nil, err
	}
	if err := admin.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "parley-operator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: OperatorUser}},
	}); err != nil {
		return nil, err
	}
	user, err := env.AddUser(envtest.User{Name: OperatorUser}, nil)
	if err != nil {
		return nil, err
	}
	return user.Config(), nil
}

// Namespace makes a fresh namespace named prefix plus a random suffix.
func Namespace(t testing.TB, c client.Client, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}
	if err := c.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// Eventually polls cond until it returns nil, or fails the test after timeout with what
// and cond's last error.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: still not true after %v: %v", what, timeout, err)
}
