// Package chart_test checks the Helm chart: it lints it and renders it with helm (built at
// the pinned version by hack/envtest-assets.sh, or $HELM), decodes every object strictly into
// its Kubernetes type, and checks what users and the operator depend on: the operator's
// flags, security defaults, Services and ports, RBAC equal to the generated ClusterRole, CRDs
// equal to the generated ones, and an install note whose example is valid.
package chart_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/admission"
	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/rulesfile"
	"github.com/parley-dev/parley/rules"
)

const (
	repoRoot  = "../.."
	chartDir  = "." // the test runs in charts/parley
	release   = "parley"
	namespace = "parley-system"
)

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// helm returns the helm binary: $HELM, else the one hack/envtest-assets.sh builds (cached
// after the first build). A missing helm fails the test: the chart is not checked otherwise.
func helm(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: needs helm, which hack/envtest-assets.sh builds (-short)")
	}
	helmOnce.Do(func() {
		if p := os.Getenv("HELM"); p != "" {
			helmPath = p
			return
		}
		var stderr bytes.Buffer
		cmd := exec.Command(filepath.Join("hack", "envtest-assets.sh"), "helm")
		cmd.Dir = repoRoot
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			helmErr = fmt.Errorf("hack/envtest-assets.sh helm: %v\n%s", err, stderr.String())
			return
		}
		helmPath = strings.TrimSpace(string(out))
	})
	if helmErr != nil {
		t.Fatalf("no helm to check the chart with (set HELM or run hack/envtest-assets.sh helm): %v", helmErr)
	}
	if _, err := os.Stat(helmPath); err != nil {
		t.Fatalf("helm at %q: %v", helmPath, err)
	}
	return helmPath
}

func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helm(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// No user configuration or cluster: the chart alone decides the output.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home,
		"KUBECONFIG="+filepath.Join(home, "none"))
	if err := cmd.Run(); err != nil {
		return stdout.String() + stderr.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// manifest is the rendered chart, each object decoded strictly into its type.
type manifest struct {
	objects map[string]any // "Kind/namespace/name"
	order   []string
}

func key(kind, ns, name string) string { return kind + "/" + ns + "/" + name }

// newObject gives the type a rendered kind decodes into; a kind the test does not know
// fails the test, so a new template comes with its checks.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, nil
	case "rbac.authorization.k8s.io/v1/ClusterRole":
		return &rbacv1.ClusterRole{}, nil
	case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}, nil
	case "rbac.authorization.k8s.io/v1/Role":
		return &rbacv1.Role{}, nil
	case "rbac.authorization.k8s.io/v1/RoleBinding":
		return &rbacv1.RoleBinding{}, nil
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration":
		return &admissionregistrationv1.ValidatingWebhookConfiguration{}, nil
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PodMonitor", "monitoring.coreos.com/v1/PrometheusRule",
		"apiextensions.k8s.io/v1/CustomResourceDefinition",
		"cert-manager.io/v1/Issuer", "cert-manager.io/v1/Certificate":
		return &map[string]any{}, nil
	}
	return nil, fmt.Errorf("unexpected object %s %s", apiVersion, kind)
}

func decode(t *testing.T, out string) *manifest {
	t.Helper()
	m := &manifest{objects: map[string]any{}}
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("split the rendered chart: %v", err)
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct{ Name, Namespace string }
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, doc)
		}
		if meta.Kind == "" {
			if len(bytes.TrimSpace(stripComments(doc))) != 0 {
				t.Errorf("rendered document without kind:\n%s", doc)
			}
			continue
		}
		obj, err := newObject(meta.APIVersion, meta.Kind)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Errorf("%s %s: %v\n%s", meta.Kind, meta.Metadata.Name, err, doc)
			continue
		}
		k := key(meta.Kind, meta.Metadata.Namespace, meta.Metadata.Name)
		if _, dup := m.objects[k]; dup {
			t.Errorf("rendered twice: %s", k)
		}
		m.objects[k] = obj
		m.order = append(m.order, k)
	}
	return m
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for line := range strings.Lines(string(doc)) {
		if l := strings.TrimSpace(line); !strings.HasPrefix(l, "#") && l != "---" {
			b.WriteString(line)
		}
	}
	return b.Bytes()
}

// get returns the object of that kind, namespace and name, failing the test without it.
func get[T any](t *testing.T, m *manifest, kind, ns, name string) T {
	t.Helper()
	obj, ok := m.objects[key(kind, ns, name)]
	if !ok {
		t.Fatalf("no %s %s/%s rendered; have %v", kind, ns, name, m.order)
	}
	return obj.(T)
}

func (m *manifest) kinds(kind string) []string {
	var keys []string
	for _, k := range m.order {
		if strings.HasPrefix(k, kind+"/") {
			keys = append(keys, k)
		}
	}
	return keys
}

func render(t *testing.T, args ...string) *manifest {
	t.Helper()
	out, err := runHelm(t, append([]string{"template", release, chartDir, "--namespace", namespace}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, out)
}

// valueSets are the configurations every check runs against; lint runs on each too.
var valueSets = map[string][]string{
	"defaults":           nil,
	"watchNamespaces":    {"--set", "watchNamespaces={decoys,qa}"},
	"watchNamespacesCSV": {"--set-string", `watchNamespaces=decoys\, qa`},
	"hostNetwork":        {"--set", "hostNetwork=true", "--set", "extraEnv[0].name=KUBERNETES_SERVICE_HOST", "--set", "extraEnv[0].value=10.0.0.1", "--set", "extraEnv[1].name=KUBERNETES_SERVICE_PORT", "--set-string", "extraEnv[1].value=6443"},
	"serviceMonitor":     {"--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.labels.release=prom", "--set", "metrics.serviceMonitor.interval=15s"},
	"noLeaderElection":   {"--set", "leaderElection.enabled=false"},
	"engine":             {"--set", "engine.address=engine.example.org:443", "--set", "engine.secretName=my-engine", "--set", "engine.extraDNSNames={engine.example.org}", "--set", "clusterDomain=corp.local"},
	"noProbes":           {"--set", "probes.enabled=false"},
	"image":              {"--set", "image.tag=v1.2.3", "--set", "connector.image=registry.example.org/parley:v1.2.3", "--set", "image.pullPolicy=Always"},
	"digest":             {"--set", "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
	"ha":                 {"--set", "concurrent=8", "--set", "replicaCount=3", "--set", "podDisruptionBudget.enabled=true", "--set", "podLabels.team=sec", "--set", "podAnnotations.note=x"},
	"activities":         {"--set", "activities.qps=5", "--set", "activities.burst=7", "--set", "activities.queue=99", "--set", "logLevel=debug", "--set", "logFormat=console"},
	"fullnameOverride":   {"--set", "fullnameOverride=decoy-operator"},
	"externalAccount":    {"--set", "serviceAccount.create=false", "--set", "serviceAccount.name=ops", "--set", "rbac.create=false"},
	"webhookAddress":     {"--set", "webhook.address=127.0.0.1:19444", "--set", "webhook.port=19444", "--set", "webhook.failurePolicy=Fail"},
	"certManager":        {"--set", "webhook.certManager.enabled=true"},
	"noWebhook":          {"--set", "webhook.enabled=false"},
	"sharedMemory":       {"--set", "sharedMemory.url=rediss://redis.db:6379/0", "--set", "sharedMemory.existingSecret=redis-auth", "--set", "sharedMemory.passwordKey=pw", "--set", "sharedMemory.tls.caSecret=redis-tls"},
	"sharedMemoryPlain":  {"--set", "sharedMemory.url=redis://redis.db:6379", "--set", "sharedMemory.tls.caKey=unused.crt"},
	"operations": {"--set", "grafana.dashboard.enabled=true", "--set", "prometheusRule.enabled=true", "--set", "prometheusRule.labels.release=prom",
		"--set", "metrics.podMonitor.enabled=true", "--set", "metrics.podMonitor.labels.release=prom"},
	"insecureMetrics": {"--set", "metrics.secure=false", "--set", "metrics.serviceMonitor.enabled=true"},
	"metricsCert": {"--set", "metrics.certSecret=parley-metrics-tls", "--set", "metrics.serviceMonitor.enabled=true",
		"--set", "metrics.readerSubjects[0].kind=ServiceAccount", "--set", "metrics.readerSubjects[0].name=prometheus-k8s",
		"--set", "metrics.readerSubjects[0].namespace=monitoring"},
}

func TestLint(t *testing.T) {
	if _, err := runHelm(t, "lint", chartDir); err != nil {
		t.Error(err)
	}
	names := slices.Sorted(maps.Keys(valueSets))
	for _, name := range names {
		args := append([]string{"lint", "--strict", chartDir, "--namespace", namespace}, valueSets[name]...)
		if _, err := runHelm(t, args...); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// flagsOf parses the container's args: the subcommand first, then --name=value flags only.
func flagsOf(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	if len(c.Args) == 0 || c.Args[0] != "operator" {
		t.Fatalf("args %q: want the operator subcommand first", c.Args)
	}
	if len(c.Command) != 0 {
		t.Errorf("command %q: the image's entrypoint must run parley", c.Command)
	}
	flags := map[string]string{}
	for _, a := range c.Args[1:] {
		name, value, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(name, "--") {
			t.Errorf("arg %q: want --flag=value", a)
			continue
		}
		if _, dup := flags[name]; dup {
			t.Errorf("flag %s given twice", name)
		}
		flags[name] = value
	}
	return flags
}

const engineSvc = "parley-engine"

// defaultImage is the operator's image by default: the chart's appVersion as the tag.
func defaultImage() string {
	b, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		panic(err)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &chart); err != nil || chart.AppVersion == "" {
		panic(fmt.Sprintf("Chart.yaml: no appVersion (%v)", err))
	}
	return "ghcr.io/parley-dev/parley:" + chart.AppVersion
}

func defaultFlags() map[string]string {
	return map[string]string{
		"--leader-elect":              "true",
		"--leader-election-namespace": namespace,
		"--namespaces":                "",
		"--concurrent":                "4",
		"--connector-image":           defaultImage(),
		"--metrics-bind-address":      ":8080",
		"--metrics-secure":            "true",
		"--health-probe-bind-address": ":8081",
		"--engine-bind-address":       ":9443",
		"--engine-address":            engineSvc + "." + namespace + ".svc:9443",
		"--engine-secret":             "parley-engine-tls",
		"--engine-namespace":          namespace,
		"--engine-dns-names": strings.Join([]string{engineSvc, engineSvc + "." + namespace, engineSvc + "." + namespace + ".svc",
			engineSvc + "." + namespace + ".svc.cluster.local"}, ","),
		"--activity-qps":         "50",
		"--activity-burst":       "300",
		"--activity-queue":       "10000",
		"--alert-events":         "30",
		"--activity-max-count":   "1000",
		"--activity-ttl":         "168h",
		"--zap-log-level":        "info",
		"--zap-encoder":          "json",
		"--webhook-bind-address": ":9444",
		"--webhook-secret":       "parley-webhook-tls",
		"--webhook-hosts":        webhookHosts("parley-webhook"),
	}
}

// webhookHosts are the webhook Service's names, as the chart passes them.
func webhookHosts(svc string) string {
	return strings.Join([]string{svc, svc + "." + namespace, svc + "." + namespace + ".svc", svc + "." + namespace + ".svc.cluster.local"}, ",")
}

// TestFlags checks the operator's whole command line (its CLI contract) for each value set:
// every flag present with its value, and no other.
func TestFlags(t *testing.T) {
	without := func(f map[string]string, flags ...string) map[string]string {
		for _, k := range flags {
			delete(f, k)
		}
		return f
	}
	with := func(changes map[string]string) map[string]string {
		f := defaultFlags()
		for k, v := range changes {
			f[k] = v
		}
		return f
	}
	want := map[string]map[string]string{
		"defaults":           defaultFlags(),
		"watchNamespaces":    with(map[string]string{"--namespaces": "decoys,qa"}),
		"watchNamespacesCSV": with(map[string]string{"--namespaces": "decoys,qa"}),
		"hostNetwork":        defaultFlags(),
		"serviceMonitor":     defaultFlags(),
		"noLeaderElection":   with(map[string]string{"--leader-elect": "false"}),
		"engine": with(map[string]string{
			"--engine-address": "engine.example.org:443",
			"--engine-secret":  "my-engine",
			"--engine-dns-names": strings.Join([]string{engineSvc, engineSvc + "." + namespace, engineSvc + "." + namespace + ".svc",
				engineSvc + "." + namespace + ".svc.corp.local", "engine.example.org"}, ","),
			"--webhook-hosts": strings.Replace(webhookHosts("parley-webhook"), "cluster.local", "corp.local", 1),
		}),
		"noProbes": defaultFlags(),
		"image":    with(map[string]string{"--connector-image": "registry.example.org/parley:v1.2.3"}),
		"digest": with(map[string]string{
			"--connector-image": "ghcr.io/parley-dev/parley@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}),
		"ha": with(map[string]string{"--concurrent": "8"}),
		"activities": with(map[string]string{"--activity-qps": "5", "--activity-burst": "7", "--activity-queue": "99",
			"--zap-log-level": "debug", "--zap-encoder": "console"}),
		"fullnameOverride": with(map[string]string{
			"--webhook-secret": "decoy-operator-webhook-tls",
			"--webhook-hosts":  webhookHosts("decoy-operator-webhook"),
			"--engine-address": "decoy-operator-engine." + namespace + ".svc:9443",
			"--engine-secret":  "decoy-operator-engine-tls",
			"--engine-dns-names": strings.Join([]string{"decoy-operator-engine", "decoy-operator-engine." + namespace,
				"decoy-operator-engine." + namespace + ".svc", "decoy-operator-engine." + namespace + ".svc.cluster.local"}, ","),
		}),
		"externalAccount": defaultFlags(),
		"webhookAddress":  with(map[string]string{"--webhook-bind-address": ":19444", "--webhook-hosts": "127.0.0.1"}),
		"certManager":     without(with(map[string]string{"--webhook-cert-dir": "/var/run/parley/webhook-tls"}), "--webhook-secret", "--webhook-hosts"),
		"noWebhook":       without(with(map[string]string{"--webhook-bind-address": "0"}), "--webhook-secret", "--webhook-hosts"),
		"sharedMemory": with(map[string]string{"--shared-memory-url": "rediss://redis.db:6379/0",
			"--shared-memory-password-file": "/var/run/parley/shared-memory/password/pw",
			"--shared-memory-ca-file":       "/var/run/parley/shared-memory/ca/ca.crt"}),
		"sharedMemoryPlain": with(map[string]string{"--shared-memory-url": "redis://redis.db:6379"}),
		"operations":        defaultFlags(),
		"insecureMetrics":   with(map[string]string{"--metrics-secure": "false"}),
		"metricsCert":       with(map[string]string{"--metrics-cert-dir": "/var/run/parley/metrics-tls"}),
	}
	for _, name := range slices.Sorted(maps.Keys(valueSets)) {
		t.Run(name, func(t *testing.T) {
			w, ok := want[name]
			if !ok {
				t.Fatalf("no expected flags for value set %s", name)
			}
			m := render(t, valueSets[name]...)
			fullname := "parley"
			if name == "fullnameOverride" {
				fullname = "decoy-operator"
			}
			d := get[*appsv1.Deployment](t, m, "Deployment", namespace, fullname)
			got := flagsOf(t, operatorContainer(t, d))
			if !reflect.DeepEqual(got, w) {
				t.Errorf("flags:\n got %v\nwant %v", sortedPairs(got), sortedPairs(w))
			}
		})
	}
}

func sortedPairs(m map[string]string) []string {
	var s []string
	for k, v := range m {
		s = append(s, k+"="+v)
	}
	sort.Strings(s)
	return s
}

func operatorContainer(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	cs := d.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "operator" {
		t.Fatalf("containers %v: want one named operator", cs)
	}
	if len(d.Spec.Template.Spec.InitContainers) != 0 {
		t.Errorf("unexpected init containers")
	}
	return cs[0]
}

func TestDeploymentDefaults(t *testing.T) {
	m := render(t)
	d := get[*appsv1.Deployment](t, m, "Deployment", namespace, "parley")
	c := operatorContainer(t, d)
	pod := d.Spec.Template.Spec

	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("replicas %v, want 1", d.Spec.Replicas)
	}
	if c.Image != defaultImage() {
		t.Errorf("image %q, want ghcr.io/parley-dev/parley:<appVersion>", c.Image)
	}
	if c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("pull policy %q", c.ImagePullPolicy)
	}
	if pod.ServiceAccountName != "parley" {
		t.Errorf("serviceAccountName %q", pod.ServiceAccountName)
	}
	get[*corev1.ServiceAccount](t, m, "ServiceAccount", namespace, "parley")
	if pod.HostNetwork || pod.DNSPolicy != "" {
		t.Errorf("hostNetwork %v, dnsPolicy %q by default", pod.HostNetwork, pod.DNSPolicy)
	}
	if d.Spec.Strategy.Type != "" || d.Spec.Strategy.RollingUpdate != nil {
		t.Errorf("strategy %+v: want Kubernetes' default", d.Spec.Strategy)
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds != 30 {
		t.Errorf("terminationGracePeriodSeconds %v", pod.TerminationGracePeriodSeconds)
	}

	// Selector: the Deployment's selects its pods, and component=operator keeps connector
	// pods (name=parley, component=connector) out.
	sel := d.Spec.Selector.MatchLabels
	if sel["app.kubernetes.io/component"] != "operator" || sel["app.kubernetes.io/name"] != "parley" || sel["app.kubernetes.io/instance"] != release {
		t.Errorf("selector %v", sel)
	}
	if !subset(sel, d.Spec.Template.Labels) {
		t.Errorf("selector %v does not select the pod labels %v", sel, d.Spec.Template.Labels)
	}

	// Security (docs/design.md §7).
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %+v", psc)
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("no container security context")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot, sc.RunAsUser == nil || *sc.RunAsUser != 65532:
		t.Errorf("container runs as %v (nonroot %v), want uid 65532, non-root", sc.RunAsUser, sc.RunAsNonRoot)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("root filesystem writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("privilege escalation allowed")
	case sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
		t.Errorf("capabilities %+v, want drop ALL, add none", sc.Capabilities)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("container seccomp %+v", sc.SeccompProfile)
	case sc.Privileged != nil && *sc.Privileged:
		t.Errorf("privileged")
	}

	// Resources: requests and a memory limit.
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
	if c.Resources.Limits.Memory().Cmp(*c.Resources.Requests.Memory()) < 0 {
		t.Errorf("memory limit below request")
	}

	// POD_NAMESPACE and POD_NAME (the pod the engine's leader labels) from the downward API, first.
	if len(c.Env) != 2 || c.Env[0].Name != "POD_NAMESPACE" || c.Env[0].ValueFrom == nil ||
		c.Env[0].ValueFrom.FieldRef == nil || c.Env[0].ValueFrom.FieldRef.FieldPath != "metadata.namespace" ||
		c.Env[1].Name != "POD_NAME" || c.Env[1].ValueFrom == nil ||
		c.Env[1].ValueFrom.FieldRef == nil || c.Env[1].ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("env %+v: want POD_NAMESPACE from metadata.namespace and POD_NAME from metadata.name", c.Env)
	}

	// Ports and probes.
	wantPorts := map[string]int32{"grpc": 9443, "metrics": 8080, "health": 8081, "webhook": 9444}
	gotPorts := map[string]int32{}
	for _, p := range c.Ports {
		gotPorts[p.Name] = p.ContainerPort
		if p.Protocol != corev1.ProtocolTCP || p.HostPort != 0 {
			t.Errorf("port %+v", p)
		}
	}
	if !reflect.DeepEqual(gotPorts, wantPorts) {
		t.Errorf("container ports %v, want %v", gotPorts, wantPorts)
	}
	checkProbe(t, "liveness", c.LivenessProbe, "/healthz")
	checkProbe(t, "readiness", c.ReadinessProbe, "/readyz")

	// The read-only root filesystem leaves /tmp writable.
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/tmp" || len(pod.Volumes) != 1 ||
		pod.Volumes[0].Name != c.VolumeMounts[0].Name || pod.Volumes[0].EmptyDir == nil {
		t.Errorf("volumes %+v mounts %+v: want an emptyDir at /tmp", pod.Volumes, c.VolumeMounts)
	}

	if _, ok := m.objects[key("PodDisruptionBudget", namespace, "parley")]; ok {
		t.Errorf("PodDisruptionBudget rendered by default")
	}
	checkCommon(t, m)
}

func checkProbe(t *testing.T, name string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s probe %+v: want httpGet", name, p)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port != intstr.FromString("health") {
		t.Errorf("%s probe %s on %v, want %s on port health (8081)", name, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
	}
}

func subset(sub, of map[string]string) bool {
	for k, v := range sub {
		if of[k] != v {
			return false
		}
	}
	return len(sub) > 0
}

// checkCommon holds for every value set: objects in the release namespace (or a watched
// one), the chart's labels on each, Services that select the operator pods by named ports.
func checkCommon(t *testing.T, m *manifest) {
	t.Helper()
	var pod *corev1.PodTemplateSpec
	var containerPorts map[string]int32
	for _, k := range m.kinds("Deployment") {
		d := m.objects[k].(*appsv1.Deployment)
		pod = &d.Spec.Template
		containerPorts = map[string]int32{}
		for _, p := range operatorContainer(t, d).Ports {
			containerPorts[p.Name] = p.ContainerPort
		}
	}
	if pod == nil {
		t.Fatalf("no Deployment rendered")
	}
	for _, k := range m.order {
		kind, ns, _ := strings.Cut(k, "/")
		ns, _, _ = strings.Cut(ns, "/")
		switch kind {
		case "ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration":
			if ns != "" {
				t.Errorf("%s has a namespace", k)
			}
		case "RoleBinding":
			if ns == "" {
				t.Errorf("%s has no namespace", k)
			}
		default:
			if ns != namespace {
				t.Errorf("%s: not in the release namespace %s (helm template | kubectl apply must work)", k, namespace)
			}
		}
		labels := labelsOf(m.objects[k])
		for _, l := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
			if labels[l] == "" {
				t.Errorf("%s: label %s missing", k, l)
			}
		}
	}
	for _, k := range m.kinds("Service") {
		s := m.objects[k].(*corev1.Service)
		if s.Spec.Type != corev1.ServiceTypeClusterIP {
			t.Errorf("%s: type %q, want ClusterIP", k, s.Spec.Type)
		}
		// The engine Service selects the operator pod whose engine leads, which labels itself.
		podLabels := pod.Labels
		if strings.HasSuffix(k, "-engine") {
			podLabels = maps.Clone(pod.Labels)
			podLabels["parley.io/engine-leader"] = "true"
		}
		if !subset(s.Spec.Selector, podLabels) || s.Spec.Selector["app.kubernetes.io/component"] != "operator" {
			t.Errorf("%s: selector %v must select the operator pods %v (and only them)", k, s.Spec.Selector, pod.Labels)
		}
		for _, p := range s.Spec.Ports {
			if p.TargetPort.Type != intstr.String || containerPorts[p.TargetPort.StrVal] == 0 {
				t.Errorf("%s: port %s targets %v, not a named container port (%v)", k, p.Name, p.TargetPort.String(), containerPorts)
			}
			if p.Port != containerPorts[p.TargetPort.StrVal] {
				t.Errorf("%s: port %d, container port %d", k, p.Port, containerPorts[p.TargetPort.StrVal])
			}
		}
	}
}

func labelsOf(obj any) map[string]string {
	switch o := obj.(type) {
	case *map[string]any:
		meta, _ := (*o)["metadata"].(map[string]any)
		raw, _ := meta["labels"].(map[string]any)
		labels := map[string]string{}
		for k, v := range raw {
			labels[k], _ = v.(string)
		}
		return labels
	case interface{ GetLabels() map[string]string }:
		return o.GetLabels()
	}
	return nil
}

func TestServices(t *testing.T) {
	for _, name := range slices.Sorted(maps.Keys(valueSets)) {
		t.Run(name, func(t *testing.T) {
			m := render(t, valueSets[name]...)
			fullname := "parley"
			if name == "fullnameOverride" {
				fullname = "decoy-operator"
			}
			engine := get[*corev1.Service](t, m, "Service", namespace, fullname+"-engine")
			if len(engine.Spec.Ports) != 1 || engine.Spec.Ports[0].Name != "grpc" || engine.Spec.Ports[0].Port != 9443 ||
				engine.Spec.Ports[0].Protocol != corev1.ProtocolTCP {
				t.Errorf("engine Service ports %+v: want grpc 9443/TCP", engine.Spec.Ports)
			}
			// Only the engine's leader serves: the Service selects the pod it labelled.
			d := get[*appsv1.Deployment](t, m, "Deployment", namespace, fullname)
			leader := maps.Clone(d.Spec.Template.Labels)
			leader["parley.io/engine-leader"] = "true"
			if engine.Spec.Selector["parley.io/engine-leader"] != "true" || !subset(engine.Spec.Selector, leader) || subset(engine.Spec.Selector, d.Spec.Template.Labels) {
				t.Errorf("engine Service selector %v: want the operator pods' labels with parley.io/engine-leader=true", engine.Spec.Selector)
			}
			metrics := get[*corev1.Service](t, m, "Service", namespace, fullname+"-metrics")
			if len(metrics.Spec.Ports) != 1 || metrics.Spec.Ports[0].Name != "metrics" || metrics.Spec.Ports[0].Port != 8080 {
				t.Errorf("metrics Service ports %+v: want metrics 8080", metrics.Spec.Ports)
			} else if scheme, want := metrics.Spec.Ports[0].AppProtocol, map[bool]string{true: "https", false: "http"}[name != "insecureMetrics"]; scheme == nil || *scheme != want {
				t.Errorf("metrics Service appProtocol %v, want %s", scheme, want)
			}
			want := 3
			if name == "noWebhook" {
				want = 2
			} else {
				wh := get[*corev1.Service](t, m, "Service", namespace, fullname+"-webhook")
				if len(wh.Spec.Ports) != 1 || wh.Spec.Ports[0].Name != "webhook" || wh.Spec.Ports[0].Protocol != corev1.ProtocolTCP {
					t.Errorf("webhook Service ports %+v: want webhook/TCP", wh.Spec.Ports)
				}
			}
			if got := len(m.kinds("Service")); got != want {
				t.Errorf("%d Services, want %d", got, want)
			}
			checkCommon(t, m)
		})
	}
}

// serviceMonitor is the part of a ServiceMonitor the chart writes, decoded strictly: a field
// the chart adds must be checked here.
type serviceMonitor struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Endpoints []struct {
			Port            string `json:"port"`
			Path            string `json:"path"`
			Scheme          string `json:"scheme"`
			Interval        string `json:"interval"`
			ScrapeTimeout   string `json:"scrapeTimeout"`
			BearerTokenFile string `json:"bearerTokenFile"`
			TLSConfig       *struct {
				InsecureSkipVerify bool   `json:"insecureSkipVerify"`
				ServerName         string `json:"serverName"`
				CA                 *struct {
					Secret struct{ Name, Key string } `json:"secret"`
				} `json:"ca"`
			} `json:"tlsConfig"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// strictly re-decodes an object the test knows only as a map into its shape.
func strictly[T any](t *testing.T, obj any) T {
	t.Helper()
	var out T
	b, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, &out); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	return out
}

func TestServiceMonitor(t *testing.T) {
	if sm := render(t).kinds("ServiceMonitor"); len(sm) != 0 {
		t.Errorf("ServiceMonitor rendered by default: %v", sm)
	}
	if sm := render(t, "--set", "metrics.serviceMonitor.enabled=false").kinds("ServiceMonitor"); len(sm) != 0 {
		t.Errorf("ServiceMonitor rendered when disabled: %v", sm)
	}
	m := render(t, valueSets["serviceMonitor"]...)
	sm := strictly[serviceMonitor](t, get[*map[string]any](t, m, "ServiceMonitor", namespace, "parley"))
	if sm.Metadata.Labels["release"] != "prom" {
		t.Errorf("labels %v: want release=prom from metrics.serviceMonitor.labels", sm.Metadata.Labels)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" || sm.Spec.Endpoints[0].Path != "/metrics" ||
		sm.Spec.Endpoints[0].Interval != "15s" || sm.Spec.Endpoints[0].ScrapeTimeout != "10s" {
		t.Fatalf("endpoints %+v", sm.Spec.Endpoints)
	}
	// Secure by default: HTTPS with Prometheus' own token; the certificate is self-signed.
	ep := sm.Spec.Endpoints[0]
	if ep.Scheme != "https" || ep.BearerTokenFile != "/var/run/secrets/kubernetes.io/serviceaccount/token" ||
		ep.TLSConfig == nil || !ep.TLSConfig.InsecureSkipVerify || ep.TLSConfig.CA != nil {
		t.Errorf("secure endpoint %+v: want https, the ServiceAccount token, insecureSkipVerify", ep)
	}
	if sm.Kind != "ServiceMonitor" || sm.APIVersion != "monitoring.coreos.com/v1" {
		t.Errorf("ServiceMonitor is %s %s", sm.APIVersion, sm.Kind)
	}
	if !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{namespace}) {
		t.Errorf("namespaceSelector %v", sm.Spec.NamespaceSelector.MatchNames)
	}
	// It selects the metrics Service, and not the engine's.
	metrics := get[*corev1.Service](t, m, "Service", namespace, "parley-metrics")
	engine := get[*corev1.Service](t, m, "Service", namespace, "parley-engine")
	if !subset(sm.Spec.Selector.MatchLabels, metrics.Labels) {
		t.Errorf("selector %v does not select the metrics Service %v", sm.Spec.Selector.MatchLabels, metrics.Labels)
	}
	if subset(sm.Spec.Selector.MatchLabels, engine.Labels) {
		t.Errorf("selector %v also selects the engine Service", sm.Spec.Selector.MatchLabels)
	}

	// A certificate of the user's: verified with its CA, by the Service's name.
	sm = strictly[serviceMonitor](t, get[*map[string]any](t, render(t, valueSets["metricsCert"]...), "ServiceMonitor", namespace, "parley"))
	if ep := sm.Spec.Endpoints[0]; ep.Scheme != "https" || ep.TLSConfig == nil || ep.TLSConfig.InsecureSkipVerify || ep.TLSConfig.CA == nil ||
		ep.TLSConfig.CA.Secret.Name != "parley-metrics-tls" || ep.TLSConfig.CA.Secret.Key != "ca.crt" ||
		ep.TLSConfig.ServerName != "parley-metrics."+namespace+".svc" {
		t.Errorf("metrics.certSecret: endpoint %+v, want the Secret's ca.crt and the Service's name", ep)
	}
	// metrics.secure=false: plain HTTP, no token.
	sm = strictly[serviceMonitor](t, get[*map[string]any](t, render(t, valueSets["insecureMetrics"]...), "ServiceMonitor", namespace, "parley"))
	if ep := sm.Spec.Endpoints[0]; ep.Scheme != "http" || ep.BearerTokenFile != "" || ep.TLSConfig != nil {
		t.Errorf("metrics.secure=false: endpoint %+v, want plain http", ep)
	}
}

// The operator serves its metrics with its own certificate when metrics.certSecret names one.
func TestMetricsCertificate(t *testing.T) {
	for set, want := range map[string]bool{"defaults": false, "metricsCert": true, "insecureMetrics": false} {
		d := get[*appsv1.Deployment](t, render(t, valueSets[set]...), "Deployment", namespace, "parley")
		var mounted, volume bool
		for _, m := range operatorContainer(t, d).VolumeMounts {
			mounted = mounted || (m.Name == "metrics-tls" && m.MountPath == "/var/run/parley/metrics-tls" && m.ReadOnly)
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			volume = volume || (v.Name == "metrics-tls" && v.Secret != nil && v.Secret.SecretName == "parley-metrics-tls")
		}
		if mounted != want || volume != want {
			t.Errorf("%s: metrics-tls mounted %v, volume %v; want %v", set, mounted, volume, want)
		}
	}
}

func TestHostNetworkAndExtraEnv(t *testing.T) {
	m := render(t, valueSets["hostNetwork"]...)
	d := get[*appsv1.Deployment](t, m, "Deployment", namespace, "parley")
	pod := d.Spec.Template.Spec
	if !pod.HostNetwork || pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("hostNetwork %v dnsPolicy %q: want true, ClusterFirstWithHostNet", pod.HostNetwork, pod.DNSPolicy)
	}
	// The node's ports: the old pod must go before the new one starts.
	ru := d.Spec.Strategy.RollingUpdate
	if ru == nil || ru.MaxSurge == nil || ru.MaxSurge.IntValue() != 0 || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 1 {
		t.Errorf("strategy %+v: want maxSurge 0, maxUnavailable 1", d.Spec.Strategy)
	}
	env := operatorContainer(t, d).Env
	var names []string
	values := map[string]string{}
	for _, e := range env {
		names = append(names, e.Name)
		values[e.Name] = e.Value
	}
	if !slices.Equal(names, []string{"POD_NAMESPACE", "POD_NAME", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"}) {
		t.Errorf("env %v", names)
	}
	if values["KUBERNETES_SERVICE_HOST"] != "10.0.0.1" || values["KUBERNETES_SERVICE_PORT"] != "6443" {
		t.Errorf("env values %v", values)
	}
	// An explicit strategy wins.
	m = render(t, "--set", "hostNetwork=true", "--set", "updateStrategy.type=Recreate")
	d = get[*appsv1.Deployment](t, m, "Deployment", namespace, "parley")
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType || d.Spec.Strategy.RollingUpdate != nil {
		t.Errorf("strategy %+v: want Recreate from updateStrategy", d.Spec.Strategy)
	}
	checkCommon(t, m)
}

func TestProbesOff(t *testing.T) {
	d := get[*appsv1.Deployment](t, render(t, valueSets["noProbes"]...), "Deployment", namespace, "parley")
	c := operatorContainer(t, d)
	if c.LivenessProbe != nil || c.ReadinessProbe != nil || c.StartupProbe != nil {
		t.Errorf("probes rendered with probes.enabled=false: %+v %+v", c.LivenessProbe, c.ReadinessProbe)
	}
}

func TestImageAndPodSettings(t *testing.T) {
	c := operatorContainer(t, get[*appsv1.Deployment](t, render(t, valueSets["image"]...), "Deployment", namespace, "parley"))
	if c.Image != "ghcr.io/parley-dev/parley:v1.2.3" || c.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("image %q %q", c.Image, c.ImagePullPolicy)
	}
	c = operatorContainer(t, get[*appsv1.Deployment](t, render(t, valueSets["digest"]...), "Deployment", namespace, "parley"))
	if c.Image != "ghcr.io/parley-dev/parley@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" {
		t.Errorf("image %q: want the digest", c.Image)
	}

	m := render(t, valueSets["ha"]...)
	d := get[*appsv1.Deployment](t, m, "Deployment", namespace, "parley")
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("replicas %v", d.Spec.Replicas)
	}
	if d.Spec.Template.Labels["team"] != "sec" || d.Spec.Template.Annotations["note"] != "x" {
		t.Errorf("pod labels %v annotations %v", d.Spec.Template.Labels, d.Spec.Template.Annotations)
	}
	pdb := get[*policyv1.PodDisruptionBudget](t, m, "PodDisruptionBudget", namespace, "parley")
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 || !reflect.DeepEqual(pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) {
		t.Errorf("PodDisruptionBudget %+v", pdb.Spec)
	}
	checkCommon(t, m)

	// podLabels cannot take the pods away from their selectors.
	d = get[*appsv1.Deployment](t, render(t, "--set", "podLabels.app\\.kubernetes\\.io/component=x"), "Deployment", namespace, "parley")
	if d.Spec.Template.Labels["app.kubernetes.io/component"] != "operator" {
		t.Errorf("podLabels overrode the selector label: %v", d.Spec.Template.Labels)
	}

	d = get[*appsv1.Deployment](t, render(t, "--set", "nodeSelector.disk=ssd", "--set", "tolerations[0].operator=Exists",
		"--set", "priorityClassName=system-cluster-critical", "--set", "terminationGracePeriodSeconds=90",
		"--set", "imagePullSecrets[0].name=regcred"), "Deployment", namespace, "parley")
	pod := d.Spec.Template.Spec
	if pod.NodeSelector["disk"] != "ssd" || len(pod.Tolerations) != 1 || pod.PriorityClassName != "system-cluster-critical" ||
		*pod.TerminationGracePeriodSeconds != 90 || len(pod.ImagePullSecrets) != 1 || pod.ImagePullSecrets[0].Name != "regcred" {
		t.Errorf("pod settings not carried: %+v", pod)
	}
}

// TestRefused checks that values that cannot work fail at install, with a message.
func TestRefused(t *testing.T) {
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"replicas without leader election": {[]string{"--set", "replicaCount=2", "--set", "leaderElection.enabled=false"}, "leaderElection"},
		"log format":                       {[]string{"--set", "logFormat=text"}, "logFormat"},
		"namespace name":                   {[]string{"--set", "watchNamespaces={Bad_Name}"}, "watchNamespaces"},
		"account without name":             {[]string{"--set", "serviceAccount.create=false"}, "serviceAccount.name"},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := runHelm(t, append([]string{"template", release, chartDir, "--namespace", namespace}, c.args...)...)
			if err == nil {
				t.Fatalf("rendered; want a failure naming %s", c.want)
			}
			if !strings.Contains(out, c.want) {
				t.Errorf("failure does not name %s:\n%s", c.want, out)
			}
		})
	}
}

// generatedClusterRole reads the ClusterRole controller-gen writes from the RBAC markers.
func generatedClusterRole(t *testing.T) rbacv1.ClusterRole {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var roles []rbacv1.ClusterRole
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var cr rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict(doc, &cr); err != nil {
			t.Fatalf("config/rbac/role.yaml: %v", err)
		}
		if cr.Kind == "ClusterRole" {
			roles = append(roles, cr)
		} else if cr.Kind != "" {
			t.Errorf("config/rbac/role.yaml holds a %s: the chart does not carry it", cr.Kind)
		}
	}
	if len(roles) != 1 || len(roles[0].Rules) == 0 {
		t.Fatalf("config/rbac/role.yaml: want one ClusterRole with rules, have %d", len(roles))
	}
	return roles[0]
}

func TestRBAC(t *testing.T) {
	generated := generatedClusterRole(t)
	m := render(t)
	cr := get[*rbacv1.ClusterRole](t, m, "ClusterRole", "", "parley")
	if !reflect.DeepEqual(cr.Rules, generated.Rules) {
		t.Errorf("ClusterRole rules differ from config/rbac/role.yaml (run make manifests):\n got %+v\nwant %+v", cr.Rules, generated.Rules)
	}
	if cr.AggregationRule != nil {
		t.Errorf("aggregation rule")
	}
	sa := rbacv1.Subject{Kind: "ServiceAccount", Name: "parley", Namespace: namespace}
	crb := get[*rbacv1.ClusterRoleBinding](t, m, "ClusterRoleBinding", "", "parley")
	if crb.RoleRef != (rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "parley"}) ||
		!reflect.DeepEqual(crb.Subjects, []rbacv1.Subject{sa}) {
		t.Errorf("ClusterRoleBinding %+v %+v", crb.RoleRef, crb.Subjects)
	}
	if rb := m.kinds("RoleBinding"); len(rb) != 1 {
		t.Errorf("RoleBindings %v: want the release namespace's only", rb)
	}
	checkLocalRole(t, m, "parley", sa)
	checkCommon(t, m)
	for role, into := range map[string][]string{"parley-view": {"view", "edit", "admin"}, "parley-edit": {"edit", "admin"}} {
		cr := get[*rbacv1.ClusterRole](t, m, "ClusterRole", "", role)
		for _, to := range into {
			if cr.Labels["rbac.authorization.k8s.io/aggregate-to-"+to] != "true" {
				t.Errorf("%s is not aggregated to %s: %v", role, to, cr.Labels)
			}
		}
	}
	if off := render(t, "--set", "rbac.aggregate=false"); !slices.Equal(off.kinds("ClusterRole"),
		[]string{key("ClusterRole", "", "parley"), key("ClusterRole", "", "parley-metrics-reader")}) {
		t.Errorf("rbac.aggregate=false: ClusterRoles %v", off.kinds("ClusterRole"))
	}
	checkMetricsReader(t, m, nil)
	checkMetricsReader(t, render(t, valueSets["metricsCert"]...), []rbacv1.Subject{{Kind: "ServiceAccount", Name: "prometheus-k8s", Namespace: "monitoring"}})
	insecure := render(t, valueSets["insecureMetrics"]...)
	for _, k := range append(insecure.kinds("ClusterRole"), insecure.kinds("ClusterRoleBinding")...) {
		if strings.Contains(k, "metrics") {
			t.Errorf("metrics.secure=false: %s rendered", k)
		}
	}
	// The generated rules include the reviews the secure metrics endpoint makes.
	var authRules []rbacv1.PolicyRule
	for _, r := range generated.Rules {
		if slices.Contains(r.APIGroups, "authentication.k8s.io") || slices.Contains(r.APIGroups, "authorization.k8s.io") {
			authRules = append(authRules, r)
		}
	}
	if want := []rbacv1.PolicyRule{
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
		{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
	}; !reflect.DeepEqual(authRules, want) {
		t.Errorf("generated rules on reviews %+v, want %+v", authRules, want)
	}

	// watchNamespaces: the same rules, bound in each watched namespace only.
	for _, set := range []string{"watchNamespaces", "watchNamespacesCSV"} {
		m = render(t, valueSets[set]...)
		if !reflect.DeepEqual(get[*rbacv1.ClusterRole](t, m, "ClusterRole", "", "parley").Rules, generated.Rules) {
			t.Errorf("%s: ClusterRole rules differ", set)
		}
		// Only the rules on cluster-scoped objects, the webhook configuration and the
		// reviews of the metrics endpoint, are bound cluster-wide.
		if crb := m.kinds("ClusterRoleBinding"); !slices.Equal(crb, []string{key("ClusterRoleBinding", "", "parley-webhook"), key("ClusterRoleBinding", "", "parley-metrics-auth")}) {
			t.Errorf("%s: ClusterRoleBindings %v: the rules must apply in the watched namespaces only, but for the webhook's and the reviews'", set, crb)
		}
		if got := get[*rbacv1.ClusterRole](t, m, "ClusterRole", "", "parley-metrics-auth").Rules; !reflect.DeepEqual(got, authRules) {
			t.Errorf("%s: ClusterRole parley-metrics-auth rules %+v; want the generated %+v", set, got, authRules)
		}
		if crb := get[*rbacv1.ClusterRoleBinding](t, m, "ClusterRoleBinding", "", "parley-metrics-auth"); crb.RoleRef.Name != "parley-metrics-auth" ||
			!reflect.DeepEqual(crb.Subjects, []rbacv1.Subject{sa}) {
			t.Errorf("%s: ClusterRoleBinding parley-metrics-auth %+v %+v", set, crb.RoleRef, crb.Subjects)
		}
		var clusterScoped []rbacv1.PolicyRule
		for _, r := range generated.Rules {
			if slices.Contains(r.APIGroups, "admissionregistration.k8s.io") {
				clusterScoped = append(clusterScoped, r)
			}
		}
		if got := get[*rbacv1.ClusterRole](t, m, "ClusterRole", "", "parley-webhook").Rules; len(clusterScoped) != 1 || !reflect.DeepEqual(got, clusterScoped) {
			t.Errorf("%s: ClusterRole parley-webhook rules %+v; want the generated %+v", set, got, clusterScoped)
		}
		for _, ns := range []string{"decoys", "qa"} {
			rb := get[*rbacv1.RoleBinding](t, m, "RoleBinding", ns, "parley")
			if rb.RoleRef != (rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "parley"}) ||
				!reflect.DeepEqual(rb.Subjects, []rbacv1.Subject{sa}) {
				t.Errorf("%s: RoleBinding in %s: %+v %+v", set, ns, rb.RoleRef, rb.Subjects)
			}
		}
		if rb := m.kinds("RoleBinding"); len(rb) != 3 {
			t.Errorf("%s: RoleBindings %v: want decoys, qa and the release namespace's", set, rb)
		}
		checkLocalRole(t, m, "parley", sa)
		checkCommon(t, m)
	}

	// The release namespace watched too: its two RoleBindings must not collide.
	m = render(t, "--set", "watchNamespaces={"+namespace+"}")
	get[*rbacv1.RoleBinding](t, m, "RoleBinding", namespace, "parley")
	checkLocalRole(t, m, "parley", sa)

	// An existing account, RBAC managed elsewhere: no account and no RBAC objects.
	m = render(t, valueSets["externalAccount"]...)
	for _, kind := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} {
		if k := m.kinds(kind); len(k) != 0 {
			t.Errorf("rbac.create=false, serviceAccount.create=false: %v rendered", k)
		}
	}
	if got := get[*appsv1.Deployment](t, m, "Deployment", namespace, "parley").Spec.Template.Spec.ServiceAccountName; got != "ops" {
		t.Errorf("serviceAccountName %q, want ops", got)
	}
}

// checkMetricsReader checks the ClusterRole scrapers of the secure metrics endpoint need
// (internal/operator's tests show that it is enough, and that without it a token is
// refused), and its binding to subjects (none: no binding).
func checkMetricsReader(t *testing.T, m *manifest, subjects []rbacv1.Subject) {
	t.Helper()
	role := get[*rbacv1.ClusterRole](t, m, "ClusterRole", "", "parley-metrics-reader")
	if want := []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}; !reflect.DeepEqual(role.Rules, want) {
		t.Errorf("ClusterRole parley-metrics-reader rules %+v, want %+v", role.Rules, want)
	}
	k := key("ClusterRoleBinding", "", "parley-metrics-reader")
	if subjects == nil {
		if _, ok := m.objects[k]; ok {
			t.Errorf("%s rendered without metrics.readerSubjects", k)
		}
		return
	}
	crb := get[*rbacv1.ClusterRoleBinding](t, m, "ClusterRoleBinding", "", "parley-metrics-reader")
	if crb.RoleRef != (rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "parley-metrics-reader"}) ||
		!reflect.DeepEqual(crb.Subjects, subjects) {
		t.Errorf("ClusterRoleBinding parley-metrics-reader %+v %+v, want subjects %+v", crb.RoleRef, crb.Subjects, subjects)
	}
}

// checkLocalRole checks the Role of the release namespace: leader election Lease and Events,
// the engine's Secret, the leader label on the operator's pod; nothing else.
func checkLocalRole(t *testing.T, m *manifest, fullname string, sa rbacv1.Subject) {
	t.Helper()
	role := get[*rbacv1.Role](t, m, "Role", namespace, fullname+"-local")
	want := map[string][]string{
		"coordination.k8s.io/leases": {"create", "delete", "get", "list", "patch", "update", "watch"},
		"/events":                    {"create", "patch"},
		"events.k8s.io/events":       {"create", "patch"},
		"/secrets":                   {"create", "get", "list", "patch", "update", "watch"},
		"/pods":                      {"get", "patch"},
	}
	got := map[string][]string{}
	for _, r := range role.Rules {
		if len(r.ResourceNames) != 0 || len(r.NonResourceURLs) != 0 {
			t.Errorf("Role rule %+v", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				verbs := append(got[g+"/"+res], r.Verbs...)
				sort.Strings(verbs)
				got[g+"/"+res] = slices.Compact(verbs)
			}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Role %s-local rules:\n got %v\nwant %v", fullname, got, want)
	}
	rb := get[*rbacv1.RoleBinding](t, m, "RoleBinding", namespace, fullname+"-local")
	if rb.RoleRef != (rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: fullname + "-local"}) ||
		!reflect.DeepEqual(rb.Subjects, []rbacv1.Subject{sa}) {
		t.Errorf("RoleBinding %s-local: %+v %+v", fullname, rb.RoleRef, rb.Subjects)
	}
}

// TestCRDs checks that crds/ holds exactly the generated CRDs, byte for byte, and that helm
// installs them.
func TestCRDs(t *testing.T) {
	generated, err := filepath.Glob(filepath.Join(repoRoot, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(generated) == 0 {
		t.Fatalf("no generated CRDs in config/crd/bases: %v", err)
	}
	inChart, err := filepath.Glob(filepath.Join(chartDir, "crds", "*"))
	if err != nil {
		t.Fatal(err)
	}
	names := func(paths []string) []string {
		var n []string
		for _, p := range paths {
			n = append(n, filepath.Base(p))
		}
		sort.Strings(n)
		return n
	}
	if !slices.Equal(names(inChart), names(generated)) {
		t.Errorf("crds/ holds %v, config/crd/bases %v (run make manifests)", names(inChart), names(generated))
	}
	for _, g := range generated {
		want, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(chartDir, "crds", filepath.Base(g)))
		if err != nil {
			t.Error(err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("crds/%s differs from config/crd/bases (run make manifests)", filepath.Base(g))
		}
	}

	out, err := runHelm(t, "template", release, chartDir, "--namespace", namespace, "--include-crds")
	if err != nil {
		t.Fatal(err)
	}
	var crds []string
	for _, k := range decode(t, out).kinds("CustomResourceDefinition") {
		crds = append(crds, strings.TrimPrefix(k, "CustomResourceDefinition//"))
	}
	sort.Strings(crds)
	if want := []string{"activities.parley.io", "activitysinks.parley.io", "conversationrules.parley.io", "externalconnectors.parley.io"}; !slices.Equal(crds, want) {
		t.Errorf("helm installs the CRDs %v, want %v", crds, want)
	}
}

// TestSyncedRulesFile checks the file hack/sync-chart.sh writes against role.yaml, so that a
// stale copy is named as such even before rendering.
func TestSyncedRulesFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "files", "rbac-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var got []rbacv1.PolicyRule
	if err := yaml.UnmarshalStrict(b, &got); err != nil {
		t.Fatalf("files/rbac-rules.yaml: %v", err)
	}
	if want := generatedClusterRole(t).Rules; !reflect.DeepEqual(got, want) {
		t.Errorf("files/rbac-rules.yaml differs from config/rbac/role.yaml: run make manifests (hack/sync-chart.sh)")
	}
}

// notes renders NOTES.txt, which helm template leaves out: a copy of the chart gets a
// template that includes it in a ConfigMap.
func notes(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "parley")
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	probe := `apiVersion: v1
kind: ConfigMap
metadata: {name: notes, namespace: {{ .Release.Namespace }}}
data:
  notes: {{ include "parley/templates/NOTES.txt" . | quote }}
`
	if err := os.WriteFile(filepath.Join(dir, "templates", "zz-notes-probe.yaml"), []byte(probe), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runHelm(t, append([]string{"template", release, dir, "--namespace", namespace,
		"--show-only", "templates/zz-notes-probe.yaml"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict([]byte(out), &cm); err != nil {
		t.Fatalf("notes probe: %v\n%s", err, out)
	}
	return cm.Data["notes"]
}

// TestNotes checks the install notes: the example they tell users to apply is valid rules
// and a connector using them, and the commands that follow are there.
func TestNotes(t *testing.T) {
	for name, c := range map[string]struct {
		args []string
		ns   string // the namespace the commands name
	}{
		"all namespaces": {nil, ""},
		"watched":        {valueSets["watchNamespaces"], "decoys"},
	} {
		t.Run(name, func(t *testing.T) {
			text := notes(t, c.args...)
			nsFlag := ""
			if c.ns != "" {
				nsFlag = " -n " + c.ns
			}
			for _, want := range []string{
				"kubectl -n " + namespace + " rollout status deployment/parley",
				"kubectl apply" + nsFlag + " -f - <<'EOF'",
				"kubectl get xconn" + nsFlag,
				"kubectl get activities" + nsFlag + " -w",
			} {
				if !strings.Contains(text, want) {
					t.Errorf("notes lack %q:\n%s", want, text)
				}
			}
			checkNotesExample(t, text)
		})
	}
}

func checkNotesExample(t *testing.T, text string) {
	t.Helper()
	_, rest, ok := strings.Cut(text, "<<'EOF'\n")
	if !ok {
		t.Fatalf("no here-document in the notes:\n%s", text)
	}
	example, _, ok := strings.Cut(rest, "\nEOF\n")
	if !ok {
		t.Fatalf("here-document not closed:\n%s", rest)
	}
	docs, skipped, err := rulesfile.Read("NOTES.txt", strings.NewReader(example))
	if err != nil {
		t.Fatalf("example: %v\n%s", err, example)
	}
	if len(docs) != 1 {
		t.Fatalf("example holds %d ConversationRules, want 1", len(docs))
	}
	if _, errs := rules.Compile(docs[0].Name(), 1, &docs[0].Rules.Spec); len(errs) != 0 {
		t.Errorf("example rules do not compile: %v", errs.ToAggregate())
	}
	if len(skipped) != 1 {
		t.Errorf("example: skipped %v, want the ExternalConnector only", skipped)
	}
	var connectors int
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(example)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil || meta.Kind != "ExternalConnector" {
			continue
		}
		connectors++
		var xc v1alpha1.ExternalConnector
		if err := yaml.UnmarshalStrict(doc, &xc); err != nil {
			t.Errorf("example ExternalConnector: %v", err)
			continue
		}
		if xc.APIVersion != v1alpha1.GroupVersion.String() || xc.Name == "" {
			t.Errorf("example ExternalConnector %s %q", xc.APIVersion, xc.Name)
		}
		if xc.Spec.Rules != docs[0].Rules.Name || xc.Spec.Group != "" {
			t.Errorf("example ExternalConnector names rules %q (group %q), want %q", xc.Spec.Rules, xc.Spec.Group, docs[0].Rules.Name)
		}
	}
	if connectors != 1 {
		t.Errorf("example holds %d ExternalConnectors, want 1", connectors)
	}
}

// generatedWebhooks are the webhooks `make manifests` generates from the operator's markers.
func generatedWebhooks(t *testing.T) admissionregistrationv1.ValidatingWebhookConfiguration {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "config", "webhook", "manifests.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(raw, &vwc); err != nil {
		t.Fatal(err)
	}
	return vwc
}

// TestWebhook: the configuration carries the generated webhooks with the chart's client
// config, failurePolicy and the match condition that never sends an object being deleted;
// the operator's certificate or cert-manager's.
func TestWebhook(t *testing.T) {
	generated := generatedWebhooks(t)
	check := func(t *testing.T, m *manifest, policy admissionregistrationv1.FailurePolicyType) *admissionregistrationv1.ValidatingWebhookConfiguration {
		t.Helper()
		vwc := get[*admissionregistrationv1.ValidatingWebhookConfiguration](t, m, "ValidatingWebhookConfiguration", "", admission.ConfigurationName)
		if len(vwc.Webhooks) != len(generated.Webhooks) {
			t.Fatalf("%d webhooks, want the %d generated", len(vwc.Webhooks), len(generated.Webhooks))
		}
		for i, w := range vwc.Webhooks {
			g := generated.Webhooks[i]
			if w.Name != g.Name || !reflect.DeepEqual(w.Rules, g.Rules) || *w.SideEffects != *g.SideEffects {
				t.Errorf("webhook %d: %s %+v; want the generated %s %+v", i, w.Name, w.Rules, g.Name, g.Rules)
			}
			for _, r := range w.Rules {
				if !slices.Equal(r.Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}) {
					t.Errorf("%s: operations %v; want CREATE and UPDATE only: deletes must never be blocked", w.Name, r.Operations)
				}
			}
			if w.FailurePolicy == nil || *w.FailurePolicy != policy {
				t.Errorf("%s: failurePolicy %v, want %s", w.Name, w.FailurePolicy, policy)
			}
			if len(w.MatchConditions) != 1 || w.MatchConditions[0].Expression != admission.SkipDeletingObjects {
				t.Errorf("%s: matchConditions %+v; want the one of admission.SkipDeletingObjects", w.Name, w.MatchConditions)
			}
			if w.NamespaceSelector != nil || w.ObjectSelector != nil {
				t.Errorf("%s: selectors: the rules alone scope the webhook to Parley's kinds", w.Name)
			}
			if len(w.ClientConfig.CABundle) != 0 {
				t.Errorf("%s: a caBundle in the chart: the operator or cert-manager injects it", w.Name)
			}
		}
		return vwc
	}

	m := render(t)
	vwc := check(t, m, admissionregistrationv1.Ignore)
	for i, w := range vwc.Webhooks {
		s := w.ClientConfig.Service
		if s == nil || s.Name != "parley-webhook" || s.Namespace != namespace || *s.Port != 9444 || *s.Path != *generated.Webhooks[i].ClientConfig.Service.Path {
			t.Errorf("%s: clientConfig %+v; want the webhook Service with the generated path", w.Name, w.ClientConfig)
		}
	}
	if len(vwc.Annotations) != 0 {
		t.Errorf("annotations %v without cert-manager", vwc.Annotations)
	}

	m = render(t, valueSets["webhookAddress"]...)
	for i, w := range check(t, m, admissionregistrationv1.Fail).Webhooks {
		want := "https://127.0.0.1:19444" + *generated.Webhooks[i].ClientConfig.Service.Path
		if w.ClientConfig.URL == nil || *w.ClientConfig.URL != want || w.ClientConfig.Service != nil {
			t.Errorf("%s: clientConfig %+v; want url %s", w.Name, w.ClientConfig, want)
		}
	}

	m = render(t, valueSets["certManager"]...)
	vwc = check(t, m, admissionregistrationv1.Ignore)
	if got := vwc.Annotations["cert-manager.io/inject-ca-from"]; got != namespace+"/parley-webhook" {
		t.Errorf("cert-manager.io/inject-ca-from %q", got)
	}
	cert := *get[*map[string]any](t, m, "Certificate", namespace, "parley-webhook")
	spec := cert["spec"].(map[string]any)
	if spec["secretName"] != "parley-webhook-tls" || !reflect.DeepEqual(spec["dnsNames"], toAny(strings.Split(webhookHosts("parley-webhook"), ","))) {
		t.Errorf("Certificate spec %v", spec)
	}
	if ref := spec["issuerRef"].(map[string]any); ref["name"] != "parley-webhook" || ref["kind"] != "Issuer" {
		t.Errorf("issuerRef %v; want the chart's self-signed Issuer", ref)
	}
	get[*map[string]any](t, m, "Issuer", namespace, "parley-webhook")
	d := get[*appsv1.Deployment](t, m, "Deployment", namespace, "parley")
	if v := d.Spec.Template.Spec.Volumes; len(v) != 2 || v[1].Secret == nil || v[1].Secret.SecretName != "parley-webhook-tls" {
		t.Errorf("volumes %+v: want cert-manager's Secret mounted", v)
	}
	m = render(t, "--set", "webhook.certManager.enabled=true", "--set", "webhook.certManager.issuerRef.name=corp-ca", "--set", "webhook.certManager.issuerRef.kind=ClusterIssuer")
	if k := m.kinds("Issuer"); len(k) != 0 {
		t.Errorf("%v rendered with an issuerRef", k)
	}

	m = render(t, valueSets["noWebhook"]...)
	if k := m.kinds("ValidatingWebhookConfiguration"); len(k) != 0 {
		t.Errorf("webhook.enabled=false: %v rendered", k)
	}
	if _, err := runHelm(t, "template", release, chartDir, "--namespace", namespace, "--set", "webhook.failurePolicy=Never"); err == nil {
		t.Error("webhook.failurePolicy=Never rendered")
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// The store's password and CA reach the operator as files of the Secret or ConfigMap that
// holds them, mounted; a URL with a password, or settings that cannot work, do not render.
func TestSharedMemory(t *testing.T) {
	m := render(t, valueSets["sharedMemory"]...)
	d := get[*appsv1.Deployment](t, m, "Deployment", namespace, "parley")
	vols := map[string]corev1.Volume{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	if v := vols["shared-memory-password"]; v.Secret == nil || v.Secret.SecretName != "redis-auth" ||
		len(v.Secret.Items) != 1 || v.Secret.Items[0].Key != "pw" || v.Secret.Items[0].Path != "pw" {
		t.Errorf("password volume %+v", v)
	}
	if v := vols["shared-memory-ca"]; v.Secret == nil || v.Secret.SecretName != "redis-tls" || v.Secret.Items[0].Key != "ca.crt" {
		t.Errorf("CA volume %+v", v)
	}
	mounts := map[string]string{}
	for _, vm := range operatorContainer(t, d).VolumeMounts {
		mounts[vm.Name] = vm.MountPath
	}
	if mounts["shared-memory-password"] != "/var/run/parley/shared-memory/password" || mounts["shared-memory-ca"] != "/var/run/parley/shared-memory/ca" {
		t.Errorf("mounts %v", mounts)
	}

	m = render(t, "--set", "sharedMemory.url=rediss://redis.db:6379/0", "--set", "sharedMemory.tls.caConfigMap=redis-ca", "--set", "sharedMemory.tls.caKey=root.pem")
	d = get[*appsv1.Deployment](t, m, "Deployment", namespace, "parley")
	found := false
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "shared-memory-ca" {
			found = v.ConfigMap != nil && v.ConfigMap.Name == "redis-ca" && v.ConfigMap.Items[0].Key == "root.pem"
		}
		if v.Name == "shared-memory-password" {
			t.Errorf("a password volume without existingSecret: %+v", v)
		}
	}
	if !found || flagsOf(t, operatorContainer(t, d))["--shared-memory-ca-file"] != "/var/run/parley/shared-memory/ca/root.pem" {
		t.Errorf("CA from a ConfigMap: volumes %+v", d.Spec.Template.Spec.Volumes)
	}

	for _, bad := range [][]string{
		{"--set", "sharedMemory.url=redis://:hunter2@redis.db:6379/0"},
		{"--set", "sharedMemory.url=http://redis.db:6379"},
		{"--set", "sharedMemory.existingSecret=redis-auth"},
		{"--set", "sharedMemory.url=redis://redis.db:6379", "--set", "sharedMemory.tls.caSecret=redis-tls"},
		{"--set", "sharedMemory.url=rediss://redis.db:6379", "--set", "sharedMemory.tls.caSecret=a", "--set", "sharedMemory.tls.caConfigMap=b"},
	} {
		if _, err := runHelm(t, append([]string{"template", release, chartDir, "--namespace", namespace}, bad...)...); err == nil {
			t.Errorf("%v rendered", bad)
		}
	}
}
