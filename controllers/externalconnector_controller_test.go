package controllers_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

// ender stands in for the engine's graceful end: it is done at once unless a test holds a
// connector.
var ender = &fakeEnder{hold: map[string]bool{}, calls: map[string]int{}}

func init() { testDefaults.Ender = ender }

type fakeEnder struct {
	mu    sync.Mutex
	hold  map[string]bool
	calls map[string]int
}

func (f *fakeEnder) End(_ context.Context, ec *v1alpha1.ExternalConnector) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := ec.Namespace + "/" + ec.Name
	f.calls[key]++
	return !f.hold[key], nil
}

func (f *fakeEnder) set(ns, name string, hold bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hold[ns+"/"+name] = hold
}

func (f *fakeEnder) callsOf(ns, name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[ns+"/"+name]
}

const (
	serverRules = `{operation: {port: 6379}, conversation: {greetings: {value: "+OK\r\n"}, rules: [{id: 1, mode: Sync, regex: PING, response: "+PONG\r\n"}]}}`
	clientRules = `{operation: {mode: Client, ip: 10.0.0.1, port: 7000}, conversation: {rules: [{id: 1, mode: Sync, regex: HELLO, response: BYE, ending: true}]}}`
)

func createRules(t *testing.T, ns, name, spec string) *v1alpha1.ConversationRules {
	t.Helper()
	cr := rulesObject(t, ns, name, spec)
	if err := k8s.Create(context.Background(), cr); err != nil {
		t.Fatal(err)
	}
	return cr
}

func createConnector(t *testing.T, ns, name, spec string) *v1alpha1.ExternalConnector {
	t.Helper()
	ec := &v1alpha1.ExternalConnector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := yaml.UnmarshalStrict([]byte(spec), &ec.Spec); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(context.Background(), ec); err != nil {
		t.Fatal(err)
	}
	return ec
}

// connectorWhen waits until the reconciler has seen the connector's current generation and
// cond holds on it, and returns it.
func connectorWhen(t *testing.T, ns, name, what string, cond func(*v1alpha1.ExternalConnector) error) *v1alpha1.ExternalConnector {
	t.Helper()
	var ec v1alpha1.ExternalConnector
	eventually(t, name+": "+what, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &ec); err != nil {
			return err
		}
		if ec.Status.ObservedGeneration != ec.Generation {
			return fmt.Errorf("observed generation %d of %d", ec.Status.ObservedGeneration, ec.Generation)
		}
		if err := cond(&ec); err != nil {
			return fmt.Errorf("%v; status %s", err, statusText(&ec))
		}
		return nil
	})
	return &ec
}

func statusText(ec *v1alpha1.ExternalConnector) string {
	b, _ := yaml.Marshal(ec.Status)
	return string(b)
}

// hasCondition checks a condition's status and reason, and that its message holds every part.
func hasCondition(ec *v1alpha1.ExternalConnector, typ string, status metav1.ConditionStatus, reason string, parts ...string) error {
	c := meta.FindStatusCondition(ec.Status.Conditions, typ)
	if c == nil {
		return fmt.Errorf("no %s condition", typ)
	}
	if c.Status != status || c.Reason != reason {
		return fmt.Errorf("%s is %s/%s, want %s/%s", typ, c.Status, c.Reason, status, reason)
	}
	for _, p := range parts {
		if !strings.Contains(c.Message, p) {
			return fmt.Errorf("%s message lacks %q: %s", typ, p, c.Message)
		}
	}
	return nil
}

func phaseIs(p v1alpha1.Phase) func(*v1alpha1.ExternalConnector) error {
	return func(ec *v1alpha1.ExternalConnector) error {
		if ec.Status.Phase != p {
			return fmt.Errorf("phase %q, want %q", ec.Status.Phase, p)
		}
		return nil
	}
}

// get waits for an object to exist and reads it.
func get(t *testing.T, ns, name string, obj client.Object) {
	t.Helper()
	eventually(t, fmt.Sprintf("%T %s exists", obj, name), func() error {
		return k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj)
	})
}

// gone waits for an object not to exist.
func gone(t *testing.T, ns, name string, obj client.Object) {
	t.Helper()
	eventually(t, fmt.Sprintf("%T %s gone", obj, name), func() error {
		err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err == nil {
			return fmt.Errorf("still there")
		}
		return err
	})
}

// absent checks that an object does not exist now.
func absent(t *testing.T, ns, name string, obj client.Object) {
	t.Helper()
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj); !apierrors.IsNotFound(err) {
		t.Errorf("%T %s: want NotFound, got %v", obj, name, err)
	}
}

// change reads obj, applies mutate and writes it (through the status subresource if status),
// retrying on conflicts.
func change(t *testing.T, obj client.Object, status bool, mutate func()) {
	t.Helper()
	eventually(t, fmt.Sprintf("update %T %s", obj, obj.GetName()), func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate()
		if status {
			return k8s.Status().Update(context.Background(), obj)
		}
		return k8s.Update(context.Background(), obj)
	})
}

// waitEvent waits for an event about name whose "TYPE REASON: message" holds want.
func waitEvent(t *testing.T, ns, name, want string) {
	t.Helper()
	eventually(t, fmt.Sprintf("event %q about %s", want, name), func() error {
		var list corev1.EventList
		if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return err
		}
		var seen []string
		for _, e := range list.Items {
			if e.InvolvedObject.Name != name {
				continue
			}
			line := fmt.Sprintf("%s %s: %s", e.Type, e.Reason, e.Message)
			if strings.Contains(line, want) {
				return nil
			}
			seen = append(seen, line)
		}
		return fmt.Errorf("events: %q", seen)
	})
}

// setDeploymentReady plays the Deployment controller and kubelet, which envtest lacks.
func setDeploymentReady(t *testing.T, ns, name string, ready int32) {
	t.Helper()
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	change(t, dep, true, func() {
		dep.Status.Replicas, dep.Status.ReadyReplicas, dep.Status.AvailableReplicas = ready, ready, ready
	})
}

func labelsOf(name string) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":      "parley",
		"app.kubernetes.io/component": "connector",
		"parley.io/connector":         name,
	}
}

// checkOwned checks that obj carries the connector's labels and a controller reference to it.
func checkOwned(t *testing.T, obj client.Object, ec *v1alpha1.ExternalConnector) {
	t.Helper()
	for k, v := range labelsOf(ec.Name) {
		if obj.GetLabels()[k] != v {
			t.Errorf("%T %s: label %s=%q, want %q", obj, obj.GetName(), k, obj.GetLabels()[k], v)
		}
	}
	ref := metav1.GetControllerOf(obj)
	if ref == nil || ref.UID != ec.UID || ref.Kind != "ExternalConnector" || ref.Name != ec.Name ||
		ref.APIVersion != "parley.io/v1alpha1" || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Errorf("%T %s: controller reference %+v, want the connector %s (uid %s)", obj, obj.GetName(), ref, ec.Name, ec.UID)
	}
}

// checkPod checks what every connector pod has: the connector container, its environment,
// the engine Secret, and the security defaults.
func checkPod(t *testing.T, ns, name string, p corev1.PodTemplateSpec, port int32, proto corev1.Protocol) {
	t.Helper()
	for k, v := range labelsOf(name) {
		if p.Labels[k] != v {
			t.Errorf("pod label %s=%q, want %q", k, p.Labels[k], v)
		}
	}
	for k := range p.Annotations {
		if strings.Contains(k, "hash") {
			t.Errorf("pod annotation %s: rules changes must not restart pods", k)
		}
	}
	s := p.Spec
	if len(s.Containers) != 1 {
		t.Fatalf("containers: %+v", s.Containers)
	}
	c := s.Containers[0]
	wantArgs := []string{"connector"}
	if p.Spec.HostNetwork {
		wantArgs = append(wantArgs, "--metrics-bind-address=0")
	}
	if c.Name != "connector" || c.Image != testDefaults.ConnectorImage || !reflect.DeepEqual(c.Args, wantArgs) {
		t.Errorf("container %s image %s args %q", c.Name, c.Image, c.Args)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = "field:" + e.ValueFrom.FieldRef.FieldPath
		}
	}
	want := map[string]string{"PARLEY_CONNECTOR": name, "PARLEY_NAMESPACE": ns,
		"PARLEY_ENGINE_ADDRESS": testDefaults.EngineAddress, "PARLEY_POD_NAME": "field:metadata.name"}
	if !reflect.DeepEqual(env, want) {
		t.Errorf("env %v, want %v", env, want)
	}
	if len(c.Ports) == 0 || c.Ports[0].Name != "conversation" || c.Ports[0].ContainerPort != port || c.Ports[0].Protocol != proto {
		t.Errorf("ports %+v, want conversation %d/%s", c.Ports, port, proto)
	}
	// Ready once it serves and is connected to the engine: /readyz on the metrics port,
	// which the host network turns off.
	if p.Spec.HostNetwork {
		if len(c.Ports) != 1 || c.ReadinessProbe != nil {
			t.Errorf("on the host network: ports %+v, readiness probe %+v", c.Ports, c.ReadinessProbe)
		}
	} else if len(c.Ports) != 2 || c.Ports[1].Name != "metrics" || c.Ports[1].ContainerPort != 9090 ||
		c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" ||
		c.ReadinessProbe.HTTPGet.Port.String() != "metrics" {
		t.Errorf("ports %+v, readiness probe %+v: want /readyz on metrics 9090", c.Ports, c.ReadinessProbe)
	}
	mount := mountOf(c, "/var/run/parley/engine")
	if mount == nil || !mount.ReadOnly {
		t.Errorf("engine mount %+v", c.VolumeMounts)
	} else if v := volumeOf(s, mount.Name); v == nil || v.Secret == nil || v.Secret.SecretName != name+"-engine" {
		t.Errorf("engine volume %+v", v)
	}

	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 ||
		(sc.Privileged != nil && *sc.Privileged) {
		t.Errorf("container security context %+v", sc)
	}
	psc := s.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 ||
		psc.RunAsGroup == nil || *psc.RunAsGroup != 65532 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %+v", psc)
	}
	if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken %v", s.AutomountServiceAccountToken)
	}
	if c.Resources.Limits.Memory().IsZero() {
		t.Errorf("no memory limit: %+v", c.Resources)
	}
}

func mountOf(c corev1.Container, path string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == path {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func volumeOf(s corev1.PodSpec, name string) *corev1.Volume {
	for i := range s.Volumes {
		if s.Volumes[i].Name == name {
			return &s.Volumes[i]
		}
	}
	return nil
}

func sysctls(s corev1.PodSpec) map[string]string {
	out := map[string]string{}
	if s.SecurityContext != nil {
		for _, sc := range s.SecurityContext.Sysctls {
			out[sc.Name] = sc.Value
		}
	}
	return out
}

func TestServerConnectorFromNamedRules(t *testing.T) {
	ns := namespace(t)
	cr := createRules(t, ns, "fake-redis", serverRules)
	createConnector(t, ns, "redis-decoy", `
rules: fake-redis
service: {type: LoadBalancer, externalTrafficPolicy: Local, annotations: {lb.example.com/internal: "true"}}
`)
	ec := connectorWhen(t, ns, "redis-decoy", "resolved and Pending", func(ec *v1alpha1.ExternalConnector) error {
		if err := hasCondition(ec, "RulesResolved", metav1.ConditionTrue, "Resolved", "fake-redis"); err != nil {
			return err
		}
		if err := hasCondition(ec, "Ready", metav1.ConditionFalse, "ReplicasNotReady"); err != nil {
			return err
		}
		return phaseIs(v1alpha1.PhasePending)(ec)
	})
	st := ec.Status
	wantRef := v1alpha1.RulesRef{Name: "fake-redis", Generation: 1, Hash: rules.Hash(&cr.Spec)}
	if st.Rules == nil || *st.Rules != wantRef {
		t.Errorf("status.rules %+v, want %+v", st.Rules, wantRef)
	}
	if st.Mode != v1alpha1.ModeServer || st.Transport != v1alpha1.TransportTCP || st.Port != 6379 {
		t.Errorf("mode %s transport %s port %d", st.Mode, st.Transport, st.Port)
	}
	if want := "redis-decoy." + ns + ".svc:6379/TCP"; st.Endpoint != want {
		t.Errorf("endpoint %q, want %q", st.Endpoint, want)
	}
	if !reflect.DeepEqual(ec.Finalizers, []string{"parley.io/graceful-end"}) {
		t.Errorf("finalizers %q", ec.Finalizers)
	}

	var secret corev1.Secret
	get(t, ns, "redis-decoy-engine", &secret)
	checkOwned(t, &secret, ec)
	token := string(secret.Data["token"])
	if b, err := hex.DecodeString(token); err != nil || len(b) != 32 {
		t.Errorf("token %q: want 32 bytes in hex (%v)", token, err)
	}

	var dep appsv1.Deployment
	get(t, ns, "redis-decoy", &dep)
	checkOwned(t, &dep, ec)
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 {
		t.Errorf("replicas %v", dep.Spec.Replicas)
	}
	if !reflect.DeepEqual(dep.Spec.Selector.MatchLabels, labelsOf("redis-decoy")) {
		t.Errorf("selector %v", dep.Spec.Selector)
	}
	checkPod(t, ns, "redis-decoy", dep.Spec.Template, 6379, corev1.ProtocolTCP)
	s := dep.Spec.Template.Spec
	c := s.Containers[0]
	if len(sysctls(s)) != 0 || s.HostNetwork || s.DNSPolicy != corev1.DNSClusterFirst {
		t.Errorf("sysctls %v hostNetwork %v dnsPolicy %s", sysctls(s), s.HostNetwork, s.DNSPolicy)
	}
	if s.TerminationGracePeriodSeconds == nil || *s.TerminationGracePeriodSeconds != 30 {
		t.Errorf("terminationGracePeriodSeconds %v", s.TerminationGracePeriodSeconds)
	}
	if cpu, mem, lim := c.Resources.Requests[corev1.ResourceCPU], c.Resources.Requests[corev1.ResourceMemory],
		c.Resources.Limits[corev1.ResourceMemory]; cpu.String() != "10m" || mem.String() != "32Mi" || lim.String() != "64Mi" {
		t.Errorf("default resources %+v", c.Resources)
	}
	if len(c.VolumeMounts) != 1 || len(s.Volumes) != 1 {
		t.Errorf("no TLS asked, yet mounts %+v volumes %+v", c.VolumeMounts, s.Volumes)
	}

	var svc corev1.Service
	get(t, ns, "redis-decoy", &svc)
	checkOwned(t, &svc, ec)
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("service type %s externalTrafficPolicy %s", svc.Spec.Type, svc.Spec.ExternalTrafficPolicy)
	}
	if svc.Annotations["lb.example.com/internal"] != "true" {
		t.Errorf("service annotations %v", svc.Annotations)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 6379 || svc.Spec.Ports[0].Protocol != corev1.ProtocolTCP ||
		svc.Spec.Ports[0].TargetPort.String() != "conversation" {
		t.Errorf("service ports %+v", svc.Spec.Ports)
	}
	if !reflect.DeepEqual(svc.Spec.Selector, labelsOf("redis-decoy")) {
		t.Errorf("service selector %v", svc.Spec.Selector)
	}

	// No kubelet here: play it, and the connector is Running.
	setDeploymentReady(t, ns, "redis-decoy", 1)
	connectorWhen(t, ns, "redis-decoy", "Running", func(ec *v1alpha1.ExternalConnector) error {
		if ec.Status.ReadyReplicas != 1 || ec.Status.Replicas != 1 {
			return fmt.Errorf("replicas %d ready %d", ec.Status.Replicas, ec.Status.ReadyReplicas)
		}
		if err := hasCondition(ec, "Ready", metav1.ConditionTrue, "ReplicasReady", "1/1"); err != nil {
			return err
		}
		return phaseIs(v1alpha1.PhaseRunning)(ec)
	})

	// What other managers set is left alone (here, what `kubectl rollout restart` sets).
	restart := client.RawPatch(types.MergePatchType,
		[]byte(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"now"}}}}}`))
	if err := k8s.Patch(context.Background(), &dep, restart, client.FieldOwner("kubectl-rollout")); err != nil {
		t.Fatal(err)
	}

	// Edits reach the Deployment and the Service; the token survives every reconcile.
	change(t, ec, false, func() {
		ec.Spec.Replicas = new(int32(3))
		ec.Spec.Service = v1alpha1.ConnectorService{}
	})
	eventually(t, "3 replicas", func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(&dep), &dep); err != nil {
			return err
		}
		if *dep.Spec.Replicas != 3 {
			return fmt.Errorf("replicas %d", *dep.Spec.Replicas)
		}
		return nil
	})
	if dep.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] != "now" {
		t.Errorf("another manager's annotation is gone: %v", dep.Spec.Template.Annotations)
	}
	eventually(t, "a ClusterIP Service", func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(&svc), &svc); err != nil {
			return err
		}
		if svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.ExternalTrafficPolicy != "" || len(svc.Annotations) != 0 {
			return fmt.Errorf("type %s externalTrafficPolicy %q annotations %v", svc.Spec.Type, svc.Spec.ExternalTrafficPolicy, svc.Annotations)
		}
		return nil
	})
	get(t, ns, "redis-decoy-engine", &secret)
	if string(secret.Data["token"]) != token {
		t.Errorf("the token changed: %q, was %q", secret.Data["token"], token)
	}

	waitEvent(t, ns, "redis-decoy", "Normal Resolved: ConversationRules fake-redis (generation 1)")
	waitEvent(t, ns, "redis-decoy", "Normal Created: created Secret redis-decoy-engine")
	waitEvent(t, ns, "redis-decoy", "Normal Created: created Deployment redis-decoy")
	waitEvent(t, ns, "redis-decoy", "Normal Created: created Service redis-decoy: LoadBalancer")
}

func TestConnectorPodOptions(t *testing.T) {
	ns := namespace(t)
	createRules(t, ns, "web", `{operation: {port: 8080}, conversation: {default: {value: "HTTP/1.0 404 Not Found\r\n\r\n"}}}`)
	createConnector(t, ns, "web-decoy", `
rules: web
port: 80
gracePeriod: 10s
tls: {secretName: web-tls, clientCASecretName: web-ca}
pod:
  resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: "1", memory: 128Mi}}
  nodeSelector: {kubernetes.io/os: linux}
  tolerations: [{key: dedicated, operator: Equal, value: decoys, effect: NoSchedule}]
  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [dmz]}]}]}}}
  hostNetwork: true
  annotations: {example.com/scrape: "false"}
  labels: {team: blue, parley.io/connector: hijack}
`)
	ec := connectorWhen(t, ns, "web-decoy", "port 80", func(ec *v1alpha1.ExternalConnector) error {
		if ec.Status.Port != 80 || ec.Status.Endpoint != "web-decoy."+ns+".svc:80/TCP" {
			return fmt.Errorf("port %d endpoint %s", ec.Status.Port, ec.Status.Endpoint)
		}
		return nil
	})
	var dep appsv1.Deployment
	get(t, ns, "web-decoy", &dep)
	checkOwned(t, &dep, ec)
	p := dep.Spec.Template
	checkPod(t, ns, "web-decoy", p, 80, corev1.ProtocolTCP)
	s, c := p.Spec, p.Spec.Containers[0]
	if p.Labels["team"] != "blue" || p.Annotations["example.com/scrape"] != "false" {
		t.Errorf("pod labels %v annotations %v", p.Labels, p.Annotations)
	}
	wantRes := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("128Mi")},
	}
	if !equalResources(c.Resources, wantRes) {
		t.Errorf("resources %+v", c.Resources)
	}
	if !reflect.DeepEqual(s.NodeSelector, map[string]string{"kubernetes.io/os": "linux"}) {
		t.Errorf("nodeSelector %v", s.NodeSelector)
	}
	if len(s.Tolerations) != 1 || s.Tolerations[0].Key != "dedicated" || s.Tolerations[0].Value != "decoys" || s.Tolerations[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("tolerations %+v", s.Tolerations)
	}
	if a := s.Affinity; a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil ||
		a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Values[0] != "dmz" {
		t.Errorf("affinity %+v", s.Affinity)
	}
	if !s.HostNetwork || s.DNSPolicy != corev1.DNSClusterFirstWithHostNet || c.Ports[0].HostPort != 80 {
		t.Errorf("hostNetwork %v dnsPolicy %s hostPort %d", s.HostNetwork, s.DNSPolicy, c.Ports[0].HostPort)
	}
	// Every connector on the node would want the same metrics port.
	if !reflect.DeepEqual(c.Args, []string{"connector", "--metrics-bind-address=0"}) {
		t.Errorf("args %q on the host network, want metrics off", c.Args)
	}
	if len(sysctls(s)) != 0 {
		t.Errorf("sysctls on the host network: %v", sysctls(s))
	}
	if ru := dep.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxSurge == nil || ru.MaxSurge.IntValue() != 0 {
		t.Errorf("host network needs the old pod gone before the new one binds the port: strategy %+v", dep.Spec.Strategy)
	}
	if s.TerminationGracePeriodSeconds == nil || *s.TerminationGracePeriodSeconds != 10 {
		t.Errorf("terminationGracePeriodSeconds %v", s.TerminationGracePeriodSeconds)
	}
	for path, secret := range map[string]string{"/var/run/parley/tls": "web-tls", "/var/run/parley/tls-ca": "web-ca"} {
		m := mountOf(c, path)
		if m == nil || !m.ReadOnly {
			t.Errorf("mount %s: %+v", path, c.VolumeMounts)
			continue
		}
		if v := volumeOf(s, m.Name); v == nil || v.Secret == nil || v.Secret.SecretName != secret {
			t.Errorf("volume of %s: %+v", path, v)
		}
	}
	var svc corev1.Service
	get(t, ns, "web-decoy", &svc)
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.ExternalTrafficPolicy != "" || svc.Spec.Ports[0].Port != 80 {
		t.Errorf("service type %s externalTrafficPolicy %q ports %+v", svc.Spec.Type, svc.Spec.ExternalTrafficPolicy, svc.Spec.Ports)
	}
	waitEvent(t, ns, "web-decoy", "Warning LowPortOnHostNetwork: port 80")

	// Off the host network, the pod's own sysctl opens port 80 to the non-root user, and
	// what came with the host network goes.
	change(t, ec, false, func() { ec.Spec.Pod.HostNetwork = false })
	eventually(t, "pod off the host network", func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(&dep), &dep); err != nil {
			return err
		}
		s := dep.Spec.Template.Spec
		if s.HostNetwork || s.DNSPolicy != corev1.DNSClusterFirst || s.Containers[0].Ports[0].HostPort != 0 {
			return fmt.Errorf("hostNetwork %v dnsPolicy %s hostPort %d", s.HostNetwork, s.DNSPolicy, s.Containers[0].Ports[0].HostPort)
		}
		if got := sysctls(s); !reflect.DeepEqual(got, map[string]string{"net.ipv4.ip_unprivileged_port_start": "80"}) {
			return fmt.Errorf("sysctls %v", got)
		}
		if ms := dep.Spec.Strategy.RollingUpdate.MaxSurge; ms.String() != "25%" {
			return fmt.Errorf("maxSurge %s", ms)
		}
		return nil
	})
}

func equalResources(a, b corev1.ResourceRequirements) bool {
	eq := func(x, y corev1.ResourceList) bool {
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || v.Cmp(w) != 0 {
				return false
			}
		}
		return true
	}
	return eq(a.Requests, b.Requests) && eq(a.Limits, b.Limits)
}

func TestUDPConnectorOnALowPort(t *testing.T) {
	ns := namespace(t)
	createRules(t, ns, "dns", `{operation: {transport: UDP, port: 5353}, conversation: {rules: [{id: 1, mode: Sync, regex: ".", response: "x"}]}}`)
	createConnector(t, ns, "dns-decoy", `{rules: dns, port: 53, service: {type: NodePort, externalTrafficPolicy: Cluster}}`)
	connectorWhen(t, ns, "dns-decoy", "UDP on 53", func(ec *v1alpha1.ExternalConnector) error {
		if ec.Status.Transport != v1alpha1.TransportUDP || ec.Status.Port != 53 || ec.Status.Endpoint != "dns-decoy."+ns+".svc:53/UDP" {
			return fmt.Errorf("transport %s port %d endpoint %s", ec.Status.Transport, ec.Status.Port, ec.Status.Endpoint)
		}
		return nil
	})
	var dep appsv1.Deployment
	get(t, ns, "dns-decoy", &dep)
	checkPod(t, ns, "dns-decoy", dep.Spec.Template, 53, corev1.ProtocolUDP)
	if got := sysctls(dep.Spec.Template.Spec); !reflect.DeepEqual(got, map[string]string{"net.ipv4.ip_unprivileged_port_start": "53"}) {
		t.Errorf("sysctls %v", got)
	}
	var svc corev1.Service
	get(t, ns, "dns-decoy", &svc)
	if svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster ||
		len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 53 || svc.Spec.Ports[0].Protocol != corev1.ProtocolUDP {
		t.Errorf("service %s %s ports %+v", svc.Spec.Type, svc.Spec.ExternalTrafficPolicy, svc.Spec.Ports)
	}
}

func TestGroupResolution(t *testing.T) {
	ns := namespace(t)
	createRules(t, ns, "mqtt", `{group: mqtt, operation: {port: 1883}}`)
	createConnector(t, ns, "by-group", `{group: redis}`)
	connectorWhen(t, ns, "by-group", "no rules in the group", func(ec *v1alpha1.ExternalConnector) error {
		if err := hasCondition(ec, "RulesResolved", metav1.ConditionFalse, "GroupNotFound", `group "redis"`); err != nil {
			return err
		}
		if err := hasCondition(ec, "Ready", metav1.ConditionFalse, "RulesNotResolved"); err != nil {
			return err
		}
		return phaseIs(v1alpha1.PhasePending)(ec)
	})
	absent(t, ns, "by-group", &appsv1.Deployment{})
	waitEvent(t, ns, "by-group", "Warning GroupNotFound")

	// Disabled and invalid rules of the group do not count.
	createRules(t, ns, "off", `{group: redis, enabled: false, operation: {port: 6379}}`)
	createRules(t, ns, "broken", `{group: redis, operation: {port: 6379}, conversation: {rules: [{id: 1, mode: Sync, regex: "a("}]}}`)
	connectorWhen(t, ns, "by-group", "skipped rules named", func(ec *v1alpha1.ExternalConnector) error {
		return hasCondition(ec, "RulesResolved", metav1.ConditionFalse, "GroupNotFound", "off (disabled)", "broken (invalid)")
	})

	createRules(t, ns, "redis-a", strings.Replace(serverRules, "{operation:", "{group: redis, operation:", 1))
	connectorWhen(t, ns, "by-group", "resolved to redis-a", func(ec *v1alpha1.ExternalConnector) error {
		if err := hasCondition(ec, "RulesResolved", metav1.ConditionTrue, "Resolved", "redis-a"); err != nil {
			return err
		}
		if ec.Status.Rules == nil || ec.Status.Rules.Name != "redis-a" {
			return fmt.Errorf("rules %+v", ec.Status.Rules)
		}
		return nil
	})
	var dep appsv1.Deployment
	get(t, ns, "by-group", &dep)

	createRules(t, ns, "redis-b", strings.Replace(serverRules, "{operation:", "{group: redis, operation:", 1))
	connectorWhen(t, ns, "by-group", "ambiguous", func(ec *v1alpha1.ExternalConnector) error {
		return hasCondition(ec, "RulesResolved", metav1.ConditionFalse, "GroupAmbiguous",
			"redis-a, redis-b", "the running Deployment by-group is kept")
	})
	waitEvent(t, ns, "by-group", "Warning GroupAmbiguous")
	get(t, ns, "by-group", &dep) // a broken choice does not take a running decoy down

	b := &v1alpha1.ConversationRules{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "redis-b"}}
	change(t, b, false, func() { b.Spec.Enabled = new(false) })
	connectorWhen(t, ns, "by-group", "resolved again", func(ec *v1alpha1.ExternalConnector) error {
		return hasCondition(ec, "RulesResolved", metav1.ConditionTrue, "Resolved", "redis-a")
	})
}

func TestMissingInvalidAndDisabledRules(t *testing.T) {
	ns := namespace(t)
	createConnector(t, ns, "waiting", `{rules: later}`)
	connectorWhen(t, ns, "waiting", "rules not found", func(ec *v1alpha1.ExternalConnector) error {
		if err := hasCondition(ec, "RulesResolved", metav1.ConditionFalse, "RulesNotFound", `"later" not found`); err != nil {
			return err
		}
		if err := hasCondition(ec, "Ready", metav1.ConditionFalse, "RulesNotResolved"); err != nil {
			return err
		}
		return phaseIs(v1alpha1.PhasePending)(ec)
	})
	absent(t, ns, "waiting", &appsv1.Deployment{})
	waitEvent(t, ns, "waiting", "Warning RulesNotFound")

	cr := createRules(t, ns, "later", `{operation: {port: 6379}, conversation: {rules: [{id: 1, mode: Sync, regex: "a("}, {id: 2, mode: Sync}]}}`)
	connectorWhen(t, ns, "waiting", "rules invalid", func(ec *v1alpha1.ExternalConnector) error {
		return hasCondition(ec, "RulesResolved", metav1.ConditionFalse, "RulesInvalid",
			"2 error(s)", "spec.conversation.rules[0].regex", "spec.conversation.rules[1].regex: Required value")
	})
	absent(t, ns, "waiting", &appsv1.Deployment{})

	change(t, cr, false, func() {
		cr.Spec.Conversation.Rules[0].Regex = "a"
		cr.Spec.Conversation.Rules[1].Regex = "b"
	})
	connectorWhen(t, ns, "waiting", "fixed rules resolve", func(ec *v1alpha1.ExternalConnector) error {
		if err := hasCondition(ec, "RulesResolved", metav1.ConditionTrue, "Resolved", "later (generation 2)"); err != nil {
			return err
		}
		if ec.Status.Rules == nil || ec.Status.Rules.Generation != 2 {
			return fmt.Errorf("rules %+v", ec.Status.Rules)
		}
		return nil
	})
	var dep appsv1.Deployment
	get(t, ns, "waiting", &dep)

	change(t, cr, false, func() { cr.Spec.Enabled = new(false) })
	connectorWhen(t, ns, "waiting", "rules disabled", func(ec *v1alpha1.ExternalConnector) error {
		if err := hasCondition(ec, "RulesResolved", metav1.ConditionFalse, "RulesDisabled", "kept"); err != nil {
			return err
		}
		// The Deployment still says how it is doing.
		return hasCondition(ec, "Ready", metav1.ConditionFalse, "ReplicasNotReady")
	})
	if err := k8s.Delete(context.Background(), cr); err != nil {
		t.Fatal(err)
	}
	connectorWhen(t, ns, "waiting", "rules gone", func(ec *v1alpha1.ExternalConnector) error {
		return hasCondition(ec, "RulesResolved", metav1.ConditionFalse, "RulesNotFound", "the running Deployment waiting is kept")
	})
	get(t, ns, "waiting", &dep)
	get(t, ns, "waiting", &corev1.Service{})
}

func TestModeChangeReplacesTheWorkload(t *testing.T) {
	ns := namespace(t)
	cr := createRules(t, ns, "flip", serverRules)
	createConnector(t, ns, "flipper", `{rules: flip}`)
	get(t, ns, "flipper", &appsv1.Deployment{})
	get(t, ns, "flipper", &corev1.Service{})

	change(t, cr, false, func() {
		cr.Spec.Operation.Mode = v1alpha1.ModeClient
		cr.Spec.Operation.IP = "10.0.0.1"
	})
	gone(t, ns, "flipper", &appsv1.Deployment{})
	gone(t, ns, "flipper", &corev1.Service{})
	var job batchv1.Job
	get(t, ns, "flipper", &job)
	ec := connectorWhen(t, ns, "flipper", "client mode", func(ec *v1alpha1.ExternalConnector) error {
		if ec.Status.Mode != v1alpha1.ModeClient || ec.Status.Endpoint != "10.0.0.1:6379/TCP" {
			return fmt.Errorf("mode %s endpoint %s", ec.Status.Mode, ec.Status.Endpoint)
		}
		return hasCondition(ec, "Ready", metav1.ConditionFalse, "JobPending")
	})
	checkOwned(t, &job, ec)
	waitEvent(t, ns, "flipper", "Normal Deleted: deleted Deployment flipper: the rules are in Client mode now")
	waitEvent(t, ns, "flipper", "Normal Deleted: deleted Service flipper")
	waitEvent(t, ns, "flipper", "Normal Created: created Job flipper")

	change(t, cr, false, func() {
		cr.Spec.Operation.Mode = v1alpha1.ModeServer
		cr.Spec.Operation.IP = ""
	})
	gone(t, ns, "flipper", &batchv1.Job{})
	get(t, ns, "flipper", &appsv1.Deployment{})
	get(t, ns, "flipper", &corev1.Service{})
	connectorWhen(t, ns, "flipper", "server mode", func(ec *v1alpha1.ExternalConnector) error {
		if ec.Status.Mode != v1alpha1.ModeServer {
			return fmt.Errorf("mode %s", ec.Status.Mode)
		}
		return nil
	})
}

func TestClientJobSucceedsOrFails(t *testing.T) {
	ns := namespace(t)
	createRules(t, ns, "dialer", clientRules)
	createConnector(t, ns, "ok", `{rules: dialer}`)
	createConnector(t, ns, "ko", `{rules: dialer}`)

	var job batchv1.Job
	get(t, ns, "ok", &job)
	ec := connectorWhen(t, ns, "ok", "Pending", phaseIs(v1alpha1.PhasePending))
	checkOwned(t, &job, ec)
	if job.Spec.BackoffLimit == nil || *job.Spec.BackoffLimit != 3 || job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("backoffLimit %v restartPolicy %s", job.Spec.BackoffLimit, job.Spec.Template.Spec.RestartPolicy)
	}
	checkPod(t, ns, "ok", job.Spec.Template, 7000, corev1.ProtocolTCP)
	if len(sysctls(job.Spec.Template.Spec)) != 0 {
		t.Errorf("a client needs no low-port sysctl: %v", sysctls(job.Spec.Template.Spec))
	}
	if ec.Status.Endpoint != "10.0.0.1:7000/TCP" || ec.Status.Mode != v1alpha1.ModeClient {
		t.Errorf("endpoint %s mode %s", ec.Status.Endpoint, ec.Status.Mode)
	}
	absent(t, ns, "ok", &corev1.Service{})
	absent(t, ns, "ok", &appsv1.Deployment{})

	start := metav1.NewTime(time.Now().Add(-time.Minute).Truncate(time.Second))
	// Its pod runs but is not ready (it has not reached the engine): not Ready yet.
	change(t, &job, true, func() { job.Status.StartTime, job.Status.Active, job.Status.Ready = &start, 1, new(int32(0)) })
	connectorWhen(t, ns, "ok", "active, not ready", func(ec *v1alpha1.ExternalConnector) error {
		return hasCondition(ec, "Ready", metav1.ConditionFalse, "JobPending", "no ready pod")
	})
	change(t, &job, true, func() { job.Status.Ready = new(int32(1)) })
	connectorWhen(t, ns, "ok", "Running", func(ec *v1alpha1.ExternalConnector) error {
		if err := hasCondition(ec, "Ready", metav1.ConditionTrue, "JobRunning"); err != nil {
			return err
		}
		return phaseIs(v1alpha1.PhaseRunning)(ec)
	})
	change(t, &job, true, func() {
		now := metav1.Now()
		job.Status.Active, job.Status.Ready, job.Status.Succeeded, job.Status.CompletionTime = 0, new(int32(0)), 1, &now
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}
	})
	connectorWhen(t, ns, "ok", "Succeeded", func(ec *v1alpha1.ExternalConnector) error {
		if err := hasCondition(ec, "Ready", metav1.ConditionFalse, "JobSucceeded"); err != nil {
			return err
		}
		return phaseIs(v1alpha1.PhaseSucceeded)(ec)
	})
	waitEvent(t, ns, "ok", "Normal Succeeded")

	var failing batchv1.Job
	get(t, ns, "ko", &failing)
	change(t, &failing, true, func() {
		now := metav1.Now()
		failing.Status.StartTime, failing.Status.Failed = &start, 4
		failing.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", LastTransitionTime: now},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit", LastTransitionTime: now},
		}
	})
	connectorWhen(t, ns, "ko", "Failed", func(ec *v1alpha1.ExternalConnector) error {
		if err := hasCondition(ec, "Ready", metav1.ConditionFalse, "JobFailed", "BackoffLimitExceeded"); err != nil {
			return err
		}
		return phaseIs(v1alpha1.PhaseFailed)(ec)
	})
	waitEvent(t, ns, "ko", "Warning Failed")

	// A finished Job is not rerun by a reconcile; an edit of the connector reruns it.
	get(t, ns, "ok", &job)
	uid := job.UID
	ok := &v1alpha1.ExternalConnector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ok"}}
	change(t, ok, false, func() { ok.Spec.Port = new(int32(7001)) })
	eventually(t, "a new Job for the edited connector", func() error {
		var j batchv1.Job
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "ok"}, &j); err != nil {
			return err
		}
		if j.UID == uid {
			return fmt.Errorf("still the old Job")
		}
		if p := j.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort; p != 7001 {
			return fmt.Errorf("port %d", p)
		}
		return nil
	})
	connectorWhen(t, ns, "ok", "Pending again", phaseIs(v1alpha1.PhasePending))
}

func TestPausedConnector(t *testing.T) {
	ns := namespace(t)
	createRules(t, ns, "r", serverRules)
	ec := createConnector(t, ns, "pausable", `{rules: r}`)
	get(t, ns, "pausable", &appsv1.Deployment{})
	setDeploymentReady(t, ns, "pausable", 1)
	connectorWhen(t, ns, "pausable", "Running", phaseIs(v1alpha1.PhaseRunning))

	change(t, ec, false, func() { ec.Spec.Paused = true })
	connectorWhen(t, ns, "pausable", "Paused", func(ec *v1alpha1.ExternalConnector) error {
		if err := hasCondition(ec, "Ready", metav1.ConditionTrue, "ReplicasReady"); err != nil {
			return err
		}
		return phaseIs(v1alpha1.PhasePaused)(ec)
	})
	var dep appsv1.Deployment
	get(t, ns, "pausable", &dep)
	if *dep.Spec.Replicas != 1 {
		t.Errorf("a paused connector keeps its pods: replicas %d", *dep.Spec.Replicas)
	}
	change(t, ec, false, func() { ec.Spec.Paused = false })
	connectorWhen(t, ns, "pausable", "Running again", phaseIs(v1alpha1.PhaseRunning))
}

func TestDeletionWaitsForTheGracefulEnd(t *testing.T) {
	ns := namespace(t)
	createRules(t, ns, "r", serverRules)
	createConnector(t, ns, "ending", `{rules: r}`)
	ender.set(ns, "ending", true)
	ec := connectorWhen(t, ns, "ending", "resolved", func(ec *v1alpha1.ExternalConnector) error {
		return hasCondition(ec, "RulesResolved", metav1.ConditionTrue, "Resolved")
	})
	// envtest has no garbage collector: the owner references are what takes these along.
	for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}} {
		get(t, ns, "ending", obj)
		checkOwned(t, obj, ec)
	}
	var secret corev1.Secret
	get(t, ns, "ending-engine", &secret)
	checkOwned(t, &secret, ec)

	if err := k8s.Delete(context.Background(), ec); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Terminating while the end is not done", func() error {
		var got v1alpha1.ExternalConnector
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(ec), &got); err != nil {
			return err
		}
		if got.Status.Phase != v1alpha1.PhaseTerminating {
			return fmt.Errorf("phase %s", got.Status.Phase)
		}
		if err := hasCondition(&got, "Ready", metav1.ConditionFalse, "Terminating"); err != nil {
			return err
		}
		if ender.callsOf(ns, "ending") < 2 {
			return fmt.Errorf("End called %d times", ender.callsOf(ns, "ending"))
		}
		return nil
	})
	var got v1alpha1.ExternalConnector
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(ec), &got); err != nil {
		t.Fatalf("the connector went before its end was done: %v", err)
	}
	ender.set(ns, "ending", false)
	gone(t, ns, "ending", &v1alpha1.ExternalConnector{})
	waitEvent(t, ns, "ending", "Normal Ended")
}

func TestDeletionIsBoundedByTheGracePeriod(t *testing.T) {
	ns := namespace(t)
	createRules(t, ns, "r", serverRules)
	createConnector(t, ns, "stuck", `{rules: r, gracePeriod: 2s}`)
	ender.set(ns, "stuck", true)
	ec := connectorWhen(t, ns, "stuck", "resolved", func(ec *v1alpha1.ExternalConnector) error {
		return hasCondition(ec, "RulesResolved", metav1.ConditionTrue, "Resolved")
	})
	var dep appsv1.Deployment
	get(t, ns, "stuck", &dep)
	if *dep.Spec.Template.Spec.TerminationGracePeriodSeconds != 2 {
		t.Errorf("terminationGracePeriodSeconds %d", *dep.Spec.Template.Spec.TerminationGracePeriodSeconds)
	}
	deleted := time.Now()
	if err := k8s.Delete(context.Background(), ec); err != nil {
		t.Fatal(err)
	}
	gone(t, ns, "stuck", &v1alpha1.ExternalConnector{})
	// deletionTimestamp has whole seconds, so the bound is 1-2 s after the request.
	if took := time.Since(deleted); took < time.Second {
		t.Errorf("removed after %v, before its grace period", took)
	}
	if n := ender.callsOf(ns, "stuck"); n < 2 {
		t.Errorf("End called %d times", n)
	}
	waitEvent(t, ns, "stuck", "Warning GracePeriodExceeded")
}

// A name too long for a pod label gets a clear condition instead of failing applies.
func TestConnectorNameTooLongForItsPods(t *testing.T) {
	ns := namespace(t)
	createRules(t, ns, "r", serverRules)
	name := "a" + strings.Repeat("b", 70)
	createConnector(t, ns, name, `{rules: r}`)
	connectorWhen(t, ns, name, "invalid name", func(ec *v1alpha1.ExternalConnector) error {
		return hasCondition(ec, "Ready", metav1.ConditionFalse, "InvalidName", "63")
	})
	absent(t, ns, name, &appsv1.Deployment{})
	absent(t, ns, name+"-engine", &corev1.Secret{})
}

// A Deployment of the connector's name that another controller owns is not taken over.
func TestSomeoneElsesDeploymentIsLeftAlone(t *testing.T) {
	ns := namespace(t)
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owner"}}
	if err := k8s.Create(context.Background(), owner); err != nil {
		t.Fatal(err)
	}
	other := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken", OwnerReferences: []metav1.OwnerReference{
			*metav1.NewControllerRef(owner, corev1.SchemeGroupVersion.WithKind("ConfigMap"))}},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "other"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "other", Image: "other:1"}}},
			},
		},
	}
	if err := k8s.Create(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	createRules(t, ns, "r", serverRules)
	createConnector(t, ns, "taken", `{rules: r}`)
	connectorWhen(t, ns, "taken", "refused", func(ec *v1alpha1.ExternalConnector) error {
		if err := hasCondition(ec, "Ready", metav1.ConditionFalse, "WorkloadFailed", "controlled by ConfigMap owner", "not touching it"); err != nil {
			return err
		}
		return phaseIs(v1alpha1.PhasePending)(ec)
	})
	waitEvent(t, ns, "taken", "Warning WorkloadFailed")
	get(t, ns, "taken", other)
	if c := other.Spec.Template.Spec.Containers; len(c) != 1 || c[0].Image != "other:1" || other.Labels["parley.io/connector"] != "" {
		t.Errorf("the other Deployment was changed: %+v", other)
	}
}

// TestScaleSubresource: kubectl scale and HorizontalPodAutoscalers work through the scale
// subresource: it sets spec.replicas, and reads status.replicas and status.selector; READY
// shows ready out of wanted.
func TestScaleSubresource(t *testing.T) {
	ns := namespace(t)
	createRules(t, ns, "r", serverRules)
	ec := createConnector(t, ns, "scaled", `{rules: r}`)
	get(t, ns, "scaled", &appsv1.Deployment{})
	setDeploymentReady(t, ns, "scaled", 1)
	connectorWhen(t, ns, "scaled", "1/1 ready", func(ec *v1alpha1.ExternalConnector) error {
		if ec.Status.Ready != "1/1" {
			return fmt.Errorf("ready %q", ec.Status.Ready)
		}
		return nil
	})

	scale := &autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: 3}}
	if err := k8s.SubResource("scale").Update(context.Background(), ec, client.WithSubResourceBody(scale)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Deployment scaled", func() error {
		var dep appsv1.Deployment
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "scaled"}, &dep); err != nil {
			return err
		}
		if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 3 {
			return fmt.Errorf("replicas %v", dep.Spec.Replicas)
		}
		return nil
	})
	connectorWhen(t, ns, "scaled", "1/3 ready", func(ec *v1alpha1.ExternalConnector) error {
		if ec.Status.Ready != "1/3" {
			return fmt.Errorf("ready %q", ec.Status.Ready)
		}
		return nil
	})
	got := &autoscalingv1.Scale{}
	if err := k8s.SubResource("scale").Get(context.Background(), ec, got); err != nil {
		t.Fatal(err)
	}
	if want := "app.kubernetes.io/component=connector,app.kubernetes.io/name=parley,parley.io/connector=scaled"; got.Spec.Replicas != 3 || got.Status.Selector != want {
		t.Errorf("scale %+v, want 3 replicas and selector %s", got, want)
	}
}

// A connector whose pod cannot be scheduled, or whose client Job's pod is not ready, is not
// Ready, and says why; once the pod is ready, it is.
func TestPendingPodsExplainReadiness(t *testing.T) {
	ns := namespace(t)
	createRules(t, ns, "r", serverRules)
	createConnector(t, ns, "stuck", `{rules: r, replicas: 2}`)
	connectorWhen(t, ns, "stuck", "waiting for replicas", func(ec *v1alpha1.ExternalConnector) error {
		return hasCondition(ec, "Ready", metav1.ConditionFalse, "ReplicasNotReady")
	})
	// Play the Deployment controller, scheduler and kubelet, which envtest lacks: one pod
	// ready, one that cannot be scheduled.
	setDeploymentReady(t, ns, "stuck", 1)
	ready := connectorPod(t, ns, "stuck", "stuck-a")
	change(t, ready, true, func() {
		ready.Status.Phase = corev1.PodRunning
		ready.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	})
	pending := connectorPod(t, ns, "stuck", "stuck-b")
	change(t, pending, true, func() {
		pending.Status.Phase = corev1.PodPending
		pending.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
			Message: "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."}}
	})
	connectorWhen(t, ns, "stuck", "Unschedulable", func(ec *v1alpha1.ExternalConnector) error {
		if err := hasCondition(ec, "Ready", metav1.ConditionFalse, "Unschedulable",
			"1/2 replicas", "pod stuck-b cannot be scheduled", "didn't have free ports"); err != nil {
			return err
		}
		return phaseIs(v1alpha1.PhaseRunning)(ec)
	})
	change(t, pending, true, func() {
		pending.Status.Phase = corev1.PodRunning
		pending.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	})
	setDeploymentReady(t, ns, "stuck", 2)
	connectorWhen(t, ns, "stuck", "Ready", func(ec *v1alpha1.ExternalConnector) error {
		return hasCondition(ec, "Ready", metav1.ConditionTrue, "ReplicasReady", "2/2")
	})
}

// connectorPod creates a pod as the connector's Deployment would, labeled as its pods are.
func connectorPod(t *testing.T, ns, connector, name string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labelsOf(connector)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "connector", Image: "parley:test"}}}}
	if err := k8s.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}
