package chart_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// envtestAssets returns the folder of kube-apiserver and etcd: $KUBEBUILDER_ASSETS, else
// what hack/envtest-assets.sh builds (cached after the first build). Missing, the test fails.
func envtestAssets(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir
	}
	cmd := exec.Command(filepath.Join("hack", "envtest-assets.sh"))
	cmd.Dir = repoRoot
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("no kube-apiserver and etcd (set KUBEBUILDER_ASSETS or run hack/envtest-assets.sh): %v", err)
	}
	return strings.TrimSpace(string(out))
}

// TestAPIServerAccepts installs the chart's CRDs into a real kube-apiserver, has it validate
// (server-side dry run) every object the chart renders for every value set and the example
// of the install notes, then installs the RBAC for real and asks the API server what the
// operator's ServiceAccount may do.
func TestAPIServerAccepts(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: needs a real kube-apiserver and etcd (-short)")
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: envtestAssets(t),
		CRDDirectoryPaths:     []string{filepath.Join(chartDir, "crds")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, ns := range []string{namespace, "decoys", "qa", "elsewhere"} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}

	for _, name := range slices.Sorted(maps.Keys(valueSets)) {
		out, err := runHelm(t, append([]string{"template", release, chartDir, "--namespace", namespace}, valueSets[name]...)...)
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range unstructuredObjects(t, out) {
			if obj.GetAPIVersion() == "monitoring.coreos.com/v1" || obj.GetAPIVersion() == "cert-manager.io/v1" {
				continue // the Prometheus Operator's and cert-manager's CRDs are not installed; TestServiceMonitor, TestPodMonitor, TestPrometheusRule and TestWebhook check them
			}
			if err := k8s.Create(ctx, obj, client.DryRunAll); err != nil {
				t.Errorf("%s: the API server refuses %s %s: %v", name, obj.GetKind(), obj.GetName(), err)
			}
		}
	}

	// The notes' example, as a user applies it: valid against the CRDs' schemas and rules.
	text := notes(t)
	_, rest, _ := strings.Cut(text, "<<'EOF'\n")
	example, _, _ := strings.Cut(rest, "\nEOF\n")
	objs := unstructuredObjects(t, example)
	if len(objs) != 2 {
		t.Fatalf("notes example: %d objects, want 2", len(objs))
	}
	for _, obj := range objs {
		obj.SetNamespace("default")
		if err := k8s.Create(ctx, obj, client.DryRunAll); err != nil {
			t.Errorf("notes example: the API server refuses %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}

	// RBAC for real: watching all namespaces, and watching decoys and qa only (another
	// release, so that the names do not collide).
	install := func(release string, args ...string) {
		out, err := runHelm(t, append([]string{"template", release, chartDir, "--namespace", namespace}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range unstructuredObjects(t, out) {
			if obj.GetKind() == "ServiceAccount" || strings.HasPrefix(obj.GetAPIVersion(), "rbac.authorization.k8s.io/") {
				if err := k8s.Create(ctx, obj); err != nil {
					t.Fatalf("%s: create %s %s: %v", release, obj.GetKind(), obj.GetName(), err)
				}
			}
		}
	}
	install("parley")
	install("parley-watched", "--set", "watchNamespaces={decoys,qa}")

	type access struct {
		verb, group, resource, ns string
		allowed                   bool
		name                      string // a rule with resourceNames allows those only
	}
	can := func(sa string, checks []access) {
		t.Helper()
		for _, c := range checks {
			review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   "system:serviceaccount:" + namespace + ":" + sa,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Verb: c.verb, Group: c.group, Resource: c.resource, Namespace: c.ns, Name: c.name,
				},
			}}
			if err := k8s.Create(ctx, review); err != nil {
				t.Fatal(err)
			}
			if review.Status.Allowed != c.allowed {
				t.Errorf("%s: %s %s.%s %q in %q: allowed %v, want %v (%s)", sa, c.verb, c.resource, c.group, c.name, c.ns,
					review.Status.Allowed, c.allowed, review.Status.Reason)
			}
		}
	}
	// Every generated rule: everywhere for the first release, in the watched namespaces only
	// for the second (but the reviews, which are cluster-scoped); a rule on named
	// cluster-scoped objects (the webhook configuration) for those objects only, in both.
	var all, watched []access
	for _, rule := range generatedClusterRole(t).Rules {
		if len(rule.ResourceNames) > 0 {
			for _, group := range rule.APIGroups {
				for _, resource := range rule.Resources {
					for _, verb := range rule.Verbs {
						for _, name := range rule.ResourceNames {
							all = append(all, access{verb, group, resource, "", true, name}, access{verb, group, resource, "", false, "other"})
						}
					}
				}
			}
			watched = append(watched, all[len(all)-2*len(rule.Verbs)*len(rule.ResourceNames)*len(rule.Resources)*len(rule.APIGroups):]...)
			continue
		}
		for _, group := range rule.APIGroups {
			for _, resource := range rule.Resources {
				for _, verb := range rule.Verbs {
					all = append(all, access{verb, group, resource, "", true, ""}, access{verb, group, resource, "elsewhere", true, ""})
					if group == "authentication.k8s.io" || group == "authorization.k8s.io" {
						// TokenReviews and SubjectAccessReviews of the secure metrics
						// endpoint: cluster-scoped, granted cluster-wide in both.
						watched = append(watched, all[len(all)-2:]...)
						continue
					}
					watched = append(watched, access{verb, group, resource, "decoys", true, ""}, access{verb, group, resource, "qa", true, ""},
						access{verb, group, resource, "elsewhere", false, ""}, access{verb, group, resource, "", false, ""})
				}
			}
		}
	}
	// The release namespace: leader election and the engine's Secret, in both.
	local := []access{
		{"create", "coordination.k8s.io", "leases", namespace, true, ""},
		{"update", "coordination.k8s.io", "leases", namespace, true, ""},
		{"create", "", "events", namespace, true, ""},
		{"create", "events.k8s.io", "events", namespace, true, ""},
		{"create", "", "secrets", namespace, true, ""},
		{"update", "", "secrets", namespace, true, ""},
		{"watch", "", "secrets", namespace, true, ""},
	}
	// Nothing else.
	never := []access{
		{"get", "", "configmaps", namespace, false, ""},
		{"delete", "", "pods", "", false, ""},
		{"create", "", "pods", namespace, false, ""},
		{"delete", "", "secrets", namespace, false, ""},
		{"create", "apiextensions.k8s.io", "customresourcedefinitions", "", false, ""},
		{"escalate", "rbac.authorization.k8s.io", "clusterroles", "", false, ""},
		{"delete", "parley.io", "conversationrules", "decoys", false, ""},
	}
	can("parley", slices.Concat(all, local, never))
	can("parley-watched", slices.Concat(watched, local, never))

	// The roles aggregated into view and edit, bound as the aggregation controller (not part
	// of envtest) would fold them in: a viewer reads Parley's kinds, never Secrets; an editor
	// changes conversations and connectors, and never writes Activities, which the engine
	// alone does.
	for _, role := range []string{"view", "edit"} {
		if err := k8s.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: "decoys", Name: "parley-" + role},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "parley-" + role},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: role + "-user", Namespace: namespace}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	can("view-user", []access{
		{"list", "parley.io", "activities", "decoys", true, ""},
		{"watch", "parley.io", "activities", "decoys", true, ""},
		{"get", "parley.io", "externalconnectors", "decoys", true, ""},
		{"get", "parley.io", "conversationrules", "decoys", true, ""},
		{"list", "parley.io", "activitysinks", "decoys", true, ""},
		{"create", "parley.io", "conversationrules", "decoys", false, ""},
		{"delete", "parley.io", "activities", "decoys", false, ""},
		{"get", "", "secrets", "decoys", false, ""},
		{"list", "parley.io", "activities", "qa", false, ""},
	})
	can("edit-user", []access{
		{"create", "parley.io", "conversationrules", "decoys", true, ""},
		{"patch", "parley.io", "externalconnectors", "decoys", true, ""},
		{"update", "parley.io", "externalconnectors/scale", "decoys", true, ""},
		{"delete", "parley.io", "activities", "decoys", true, ""},
		{"create", "parley.io", "activities", "decoys", false, ""},
		{"update", "parley.io", "activities", "decoys", false, ""},
		{"get", "", "secrets", "decoys", false, ""},
	})
}

func unstructuredObjects(t *testing.T, out string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		obj := &unstructured.Unstructured{Object: m}
		if obj.GetKind() == "" {
			t.Fatalf("document without kind:\n%s", doc)
		}
		objs = append(objs, obj)
	}
}
