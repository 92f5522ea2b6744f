package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/controllers"
	"github.com/parley-dev/parley/engine"
	"github.com/parley-dev/parley/internal/envtestutil"
	"github.com/parley-dev/parley/internal/freeport"
)

// replica is one operator replica of an HA pair: a manager that elects a leader on the real
// API server, with the engine (and no reconcilers: the suite's main operator runs those).
type replica struct {
	pod     string
	bind    string // the engine's own address
	engine  *engine.Engine
	metrics *prometheus.Registry
	stop    context.CancelFunc
	done    chan struct{}
}

// grantReleaseNamespaceRole gives the operator's identity what the chart's release-namespace
// Role (charts/parley/templates/rbac.yaml, "-local") grants beyond the generated ClusterRole:
// the leader election Lease and its Events, and patching its own pod's leader label.
func grantReleaseNamespaceRole(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: engineNamespace, Name: "parley-operator-local"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{coordinationv1.GroupName}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "patch"}},
		}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: engineNamespace, Name: "parley-operator-local"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: envtestutil.OperatorUser}}}
	for _, obj := range []client.Object{role, binding} {
		if err := k8s.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

// operatorPod makes the Pod object of an operator replica (envtest runs no kubelet: the
// replica is a manager in this process; the object is what it labels).
func operatorPod(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: engineNamespace, Name: name, Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "operator", Image: "parley:test"}}}}
	if err := k8s.Create(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), pod) })
}

// loopbackAddress is a free loopback host:port.
func loopbackAddress(t *testing.T) string {
	t.Helper()
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// isLeaderLabelled says whether the operator pod carries the engine leader label.
func isLeaderLabelled(t *testing.T, pod string) bool {
	t.Helper()
	var p corev1.Pod
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: engineNamespace, Name: pod}, &p); err != nil {
		t.Fatal(err)
	}
	return p.Labels[engine.LabelEngineLeader] == "true"
}

// startReplica runs a replica for pod with its engine on bind, electing with the Lease
// lease; connector pods are told to dial address (the engine Service's stand-in).
func startReplica(t *testing.T, pod, bind, lease, address string) *replica {
	t.Helper()
	// Short leases, so that the test does not wait 15s when a renewal is late; a replica
	// that stops hands over at once (ReleaseOnCancel), as `parley operator` does.
	leaseDuration, renewDeadline, retryPeriod := 4*time.Second, 3*time.Second, 250*time.Millisecond
	mgr, err := ctrl.NewManager(operator, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		Cache:                         controllers.CacheOptions(),
		LeaderElection:                true,
		LeaderElectionID:              lease,
		LeaderElectionNamespace:       engineNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &leaseDuration,
		RenewDeadline:                 &renewDeadline,
		RetryPeriod:                   &retryPeriod,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{pod: pod, bind: bind, metrics: prometheus.NewRegistry(), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.engine, err = engine.Setup(ctx, mgr, engine.Config{
		Options: engine.Options{ActivityQPS: 2000, ActivityBurst: 2000, Registry: r.metrics,
			StatusInterval: 300 * time.Millisecond, ReconnectGrace: 3 * time.Second,
			BindAddress: bind},
		Address: address, SecretName: "parley-engine-tls", SecretNamespace: engineNamespace,
		Pod: types.NamespacedName{Namespace: engineNamespace, Name: pod},
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		defer close(r.done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("replica %s: %v", pod, err)
		}
	}()
	t.Cleanup(r.shutdown)
	return r
}

// shutdown stops the replica and waits until its manager has returned.
func (r *replica) shutdown() {
	r.stop()
	<-r.done
}

// leaderService stands in for the engine Service, which selects the operator pod labelled
// LabelEngineLeader: envtest has no kube-proxy and no EndpointSlice controller, so this
// loopback proxy does their part. It reads the labelled pods from the API server at every
// connection, as the endpoints follow the label, and forwards to that replica's engine, or
// refuses (closes) the connection when no pod is labelled, as a Service without endpoints.
type leaderService struct {
	lis      net.Listener
	backends map[string]string // pod -> engine bind address
	wg       sync.WaitGroup
}

func newLeaderService(t *testing.T, backends map[string]string) *leaderService {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &leaderService{lis: lis, backends: backends}
	s.wg.Go(s.serve)
	t.Cleanup(func() {
		_ = lis.Close()
		s.wg.Wait()
	})
	return s
}

func (s *leaderService) addr() string { return s.lis.Addr().String() }

func (s *leaderService) serve() {
	for {
		c, err := s.lis.Accept()
		if err != nil {
			return
		}
		s.wg.Go(func() { s.forward(c) })
	}
}

func (s *leaderService) forward(c net.Conn) {
	defer func() { _ = c.Close() }()
	var pods corev1.PodList
	if err := k8s.List(context.Background(), &pods, client.InNamespace(engineNamespace),
		client.MatchingLabels{engine.LabelEngineLeader: "true"}); err != nil || len(pods.Items) != 1 {
		return
	}
	backend, ok := s.backends[pods.Items[0].Name]
	if !ok {
		return
	}
	b, err := net.DialTimeout("tcp", backend, 2*time.Second)
	if err != nil {
		return
	}
	defer func() { _ = b.Close() }()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(b, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, b); done <- struct{}{} }()
	<-done
	// One side ended: end both, so that the other copy returns too.
	_ = c.Close()
	_ = b.Close()
	<-done
}

func TestLeaderFailoverDuringAFloodLosesAndDuplicatesNothing(t *testing.T) {
	grantReleaseNamespaceRole(t)
	f := newFixture(t, nil)
	creds := secretFiles(t, f.ns, f.name)
	lease := "parley-ha-" + f.ns
	// The second replica's pod carries a leader label from an earlier process of its own.
	operatorPod(t, f.ns+"-a", nil)
	operatorPod(t, f.ns+"-b", map[string]string{engine.LabelEngineLeader: "true"})

	backends := map[string]string{f.ns + "-a": loopbackAddress(t), f.ns + "-b": loopbackAddress(t)}
	svc := newLeaderService(t, backends)
	a := startReplica(t, f.ns+"-a", backends[f.ns+"-a"], lease, svc.addr())
	select {
	case <-a.engine.Ready():
	case <-time.After(wait):
		t.Fatal("the first replica was not elected")
	}
	b := startReplica(t, f.ns+"-b", backends[f.ns+"-b"], lease, svc.addr())

	eventually(t, "the leader labelled, the standby's stale label removed", func() error {
		if !isLeaderLabelled(t, a.pod) || isLeaderLabelled(t, b.pod) {
			return fmt.Errorf("labelled: %s %v, %s %v", a.pod, isLeaderLabelled(t, a.pod), b.pod, isLeaderLabelled(t, b.pod))
		}
		return nil
	})
	// The standby is ready (rollouts must not hang on it) and serves no engine.
	if err := b.engine.ReadyCheck(&http.Request{}); err != nil {
		t.Errorf("the standby is not ready: %v", err)
	}
	if c, err := net.DialTimeout("tcp", b.bind, time.Second); err == nil {
		_ = c.Close()
		t.Errorf("the standby's engine port %s accepts connections", b.bind)
	}
	if err := a.engine.ReadyCheck(&http.Request{}); err != nil {
		t.Errorf("the leader is not ready: %v", err)
	}

	// A loaded machine writes slowly: the connector gets the time to see all it sent
	// acknowledged after SIGTERM (within wait, which p.wait allows).
	p := startConnector(t, f.ns, f.name, svc.addr(), creds, "--end-timeout", "40s")
	f.waitServing(t, p)
	stop := make(chan struct{})
	completed := traffic(t, f, 2*time.Millisecond, stop)
	eventually(t, "the leader writing the flood and counting its connections", func() error {
		if n := metric(t, a.metrics, "parley_engine_activities_written_total", f.ns, f.name); n < 50 {
			return fmt.Errorf("%v written", n)
		}
		if c := f.connector(t).Status.Connections; c.Total == 0 {
			return errors.New("no connection counted in status yet")
		}
		return nil
	})

	// The leader steps down mid-flood (a rollout, a drain): the standby takes over, the
	// connector redials through the Service and replays what was not acknowledged.
	a.shutdown()
	select {
	case <-b.engine.Ready():
	case <-time.After(wait):
		t.Fatal("the standby did not take over")
	}
	eventually(t, "the label moved to the new leader", func() error {
		if isLeaderLabelled(t, a.pod) || !isLeaderLabelled(t, b.pod) {
			return fmt.Errorf("labelled: %s %v, %s %v", a.pod, isLeaderLabelled(t, a.pod), b.pod, isLeaderLabelled(t, b.pod))
		}
		return nil
	})
	eventually(t, "the new leader writing the flood", func() error {
		if n := metric(t, b.metrics, "parley_engine_activities_written_total", f.ns, f.name); n < 50 {
			return fmt.Errorf("%v written", n)
		}
		return nil
	})
	close(stop) // the flood spanned the failover; more would only lengthen the test
	eventually(t, "EngineConnected from the new leader", func() error {
		c := meta.FindStatusCondition(f.connector(t).Status.Conditions, v1alpha1.ConditionEngineConnected)
		if c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("condition %+v", c)
		}
		return nil
	})
	n := completed()
	p.signal(t, syscall.SIGTERM)
	if err := p.wait(t); err != nil {
		t.Fatalf("exit %v", err)
	}
	if !strings.Contains(p.logs(), "replaying unacknowledged activities") {
		t.Fatalf("the connector replayed nothing: the leader did not step down mid-flood; its logs:\n%s", p.logs())
	}
	produced, dropped := producedBy(t, p)
	if dropped != 0 {
		t.Fatalf("the connector dropped %d activities", dropped)
	}
	if min := 2 + n*activitiesPerConversation; produced < min {
		t.Fatalf("the connector produced %d activities, fewer than the %d of its %d conversations", produced, min, n)
	}
	eventually(t, "every activity written", func() error {
		if got := len(f.activities(t)); got != produced {
			return fmt.Errorf("%d activities, want %d", got, produced)
		}
		return nil
	})
	checkExactlyOnce(t, f, produced)
	var connected int64
	for _, a := range f.activities(t) {
		if a.Type == v1alpha1.ActivityConnected {
			connected++
		}
	}
	eventually(t, "exact counters in status, and no pod connected after Bye", func() error {
		ec := f.connector(t)
		st := ec.Status.Activities
		if st.Total != int64(produced) || st.Recorded != int64(produced) || st.Dropped != 0 {
			return fmt.Errorf("status %+v, want %d total and recorded", st, produced)
		}
		// Connection totals come from heartbeats, which carry the process's totals: the
		// new leader counts from the last one the former leader had, not from zero.
		if c := ec.Status.Connections; c.Total != connected || c.Rejected != 0 {
			return fmt.Errorf("connections %+v, want %d total (the Connected activities), none rejected", c, connected)
		}
		if meta.IsStatusConditionTrue(ec.Status.Conditions, v1alpha1.ConditionEngineConnected) {
			return errors.New("EngineConnected still True")
		}
		return nil
	})
}

// A new leader inherits EngineConnected from its predecessor's last status write, which a
// leader that died without a word leaves True: until its pods had the time to redial, it
// does not call the connector done when it is deleted, and then it writes the truth.
func TestNewLeaderRebuildsEngineConnected(t *testing.T) {
	f := newFixture(t, nil)
	ec := f.connector(t)
	meta.SetStatusCondition(&ec.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionEngineConnected,
		Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonEngineConnected, Message: "1 pod(s) connected to the engine: gone-pod"})
	ec.Status.Activities.Total, ec.Status.Activities.Recorded = 42, 40
	if err := k8s.Status().Update(context.Background(), ec); err != nil {
		t.Fatal(err)
	}
	const grace = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e, err := startOperator(ctx, engine.Options{ActivityQPS: 100, ActivityBurst: 100, ReconnectGrace: grace}, false)
	if err != nil {
		t.Fatal(err)
	}
	if done, err := e.End(ctx, f.connector(t)); err != nil || done {
		t.Fatalf("End within the grace, the status saying a pod is connected: done %v (%v), want not done", done, err)
	}
	eventually(t, "EngineConnected False once the grace is over", func() error {
		got := f.connector(t)
		c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionEngineConnected)
		if c == nil || c.Status != metav1.ConditionFalse {
			return fmt.Errorf("condition %+v", c)
		}
		// The counters continue from the status: the sweep writes them as they were.
		if a := got.Status.Activities; a.Total != 42 || a.Recorded != 40 {
			return fmt.Errorf("activities %+v, want the 42 and 40 it had", a)
		}
		return nil
	})
	if done, err := e.End(ctx, f.connector(t)); err != nil || !done {
		t.Fatalf("End after the grace, no pod connected: done %v (%v), want done", done, err)
	}
}
