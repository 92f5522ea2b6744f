package controllers

import (
	"errors"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// These tests need no cluster: readiness, phase and status are computed from what was
// observed, and the cases below are that.

func connector(mutate ...func(*v1alpha1.ExternalConnector)) *v1alpha1.ExternalConnector {
	ec := &v1alpha1.ExternalConnector{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "decoy", Generation: 4}}
	for _, m := range mutate {
		m(ec)
	}
	return ec
}

func paused(ec *v1alpha1.ExternalConnector) { ec.Spec.Paused = true }

func deployment(replicas *int32, ready int32) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "decoy"},
		Spec:   appsv1.DeploymentSpec{Replicas: replicas},
		Status: appsv1.DeploymentStatus{Replicas: ready, ReadyReplicas: ready}}
}

// job is a Job whose active pods are all ready.
func job(active int32, conditions ...batchv1.JobCondition) *batchv1.Job {
	return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "decoy"},
		Status: batchv1.JobStatus{Active: active, Ready: &active, Conditions: conditions}}
}

// pod is a connector pod in a state that explains why it is not ready.
func pod(name string, mutate func(*corev1.Pod)) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.PodStatus{Phase: corev1.PodPending}}
	mutate(&p)
	return p
}

func unschedulable(p *corev1.Pod) {
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
		Message: "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."}}
}

func imagePullBackOff(p *corev1.Pod) {
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "connector", State: corev1.ContainerState{
		Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "parley:nope"`}}}}
}

func runningNotReady(p *corev1.Pod) {
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
}

func runningReady(p *corev1.Pod) {
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
}

var (
	jobComplete = batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}
	jobFailed   = batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue,
		Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit"}
	// Conditions that do not end a Job.
	jobNotComplete = batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionFalse}
	jobSuspended   = batchv1.JobCondition{Type: batchv1.JobSuspended, Status: corev1.ConditionTrue}
)

var (
	serverTarget = &target{rules: v1alpha1.RulesRef{Name: "r", Generation: 2, Hash: "h"},
		mode: v1alpha1.ModeServer, transport: v1alpha1.TransportTCP, port: 6379}
	resolved   = resolution{target: serverTarget, reason: v1alpha1.ReasonResolved, message: "ConversationRules r (generation 2): Server TCP port 6379"}
	unresolved = resolution{reason: v1alpha1.ReasonRulesNotFound, message: `ConversationRules "r" not found in namespace ns`}
)

func TestReadiness(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ec      *v1alpha1.ExternalConnector
		res     resolution
		w       observed
		werr    error
		phase   v1alpha1.Phase
		status  metav1.ConditionStatus
		reason  string
		message string
	}{
		{name: "Deployment ready", ec: connector(), res: resolved, w: observed{deployment: deployment(new(int32(3)), 3)},
			phase: v1alpha1.PhaseRunning, status: metav1.ConditionTrue, reason: v1alpha1.ReasonReplicasReady,
			message: "3/3 replicas of Deployment decoy ready"},
		{name: "Deployment partly ready runs, not Ready", ec: connector(), res: resolved, w: observed{deployment: deployment(new(int32(3)), 1)},
			phase: v1alpha1.PhaseRunning, status: metav1.ConditionFalse, reason: v1alpha1.ReasonReplicasNotReady,
			message: "1/3 replicas of Deployment decoy ready"},
		{name: "a pod that cannot be scheduled", ec: connector(), res: resolved,
			w:     observed{deployment: deployment(new(int32(2)), 1), pods: []corev1.Pod{pod("decoy-a", runningReady), pod("decoy-b", unschedulable)}},
			phase: v1alpha1.PhaseRunning, status: metav1.ConditionFalse, reason: v1alpha1.ReasonUnschedulable,
			message: "1/2 replicas of Deployment decoy ready; pod decoy-b cannot be scheduled: 0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."},
		{name: "an image that cannot be pulled", ec: connector(), res: resolved,
			w:     observed{deployment: deployment(new(int32(1)), 0), pods: []corev1.Pod{pod("decoy-a", imagePullBackOff)}},
			phase: v1alpha1.PhasePending, status: metav1.ConditionFalse, reason: v1alpha1.ReasonContainerWaiting,
			message: `0/1 replicas of Deployment decoy ready; pod decoy-a: container connector is waiting: ImagePullBackOff: Back-off pulling image "parley:nope"`},
		{name: "a running pod not connected to the engine", ec: connector(), res: resolved,
			w:     observed{deployment: deployment(new(int32(1)), 0), pods: []corev1.Pod{pod("decoy-a", runningNotReady)}},
			phase: v1alpha1.PhasePending, status: metav1.ConditionFalse, reason: v1alpha1.ReasonReplicasNotReady,
			message: "0/1 replicas of Deployment decoy ready; pod decoy-a runs but is not ready: it is not connected to the engine or does not serve yet (its /readyz says which)"},
		{name: "a Job whose pod waits for a port", ec: connector(), res: resolved,
			w:     observed{job: &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "decoy"}, Status: batchv1.JobStatus{Active: 1}}, pods: []corev1.Pod{pod("decoy-x", unschedulable)}},
			phase: v1alpha1.PhasePending, status: metav1.ConditionFalse, reason: v1alpha1.ReasonUnschedulable,
			message: "Job decoy has no ready pod yet; pod decoy-x cannot be scheduled: 0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."},
		{name: "Deployment not ready", ec: connector(), res: resolved, w: observed{deployment: deployment(new(int32(2)), 0)},
			phase: v1alpha1.PhasePending, status: metav1.ConditionFalse, reason: v1alpha1.ReasonReplicasNotReady,
			message: "0/2 replicas of Deployment decoy ready"},
		{name: "Deployment without replicas wants one", ec: connector(), res: resolved, w: observed{deployment: deployment(nil, 0)},
			phase: v1alpha1.PhasePending, status: metav1.ConditionFalse, reason: v1alpha1.ReasonReplicasNotReady,
			message: "0/1 replicas of Deployment decoy ready"},
		{name: "Deployment scaled to zero", ec: connector(), res: resolved, w: observed{deployment: deployment(new(int32(0)), 0)},
			phase: v1alpha1.PhasePending, status: metav1.ConditionFalse, reason: v1alpha1.ReasonScaledToZero,
			message: "Deployment decoy is scaled to 0 replicas"},
		{name: "Job running", ec: connector(), res: resolved, w: observed{job: job(2)},
			phase: v1alpha1.PhaseRunning, status: metav1.ConditionTrue, reason: v1alpha1.ReasonJobRunning,
			message: "Job decoy has 2 ready pod(s)"},
		{name: "Job pending", ec: connector(), res: resolved, w: observed{job: job(0)},
			phase: v1alpha1.PhasePending, status: metav1.ConditionFalse, reason: v1alpha1.ReasonJobPending,
			message: "Job decoy has no ready pod yet"},
		{name: "Job conditions that do not end it", ec: connector(), res: resolved, w: observed{job: job(1, jobNotComplete, jobSuspended)},
			phase: v1alpha1.PhaseRunning, status: metav1.ConditionTrue, reason: v1alpha1.ReasonJobRunning,
			message: "Job decoy has 1 ready pod(s)"},
		{name: "Job succeeded", ec: connector(), res: resolved, w: observed{job: job(0, jobComplete)},
			phase: v1alpha1.PhaseSucceeded, status: metav1.ConditionFalse, reason: v1alpha1.ReasonJobSucceeded,
			message: "Job decoy completed: every conversation has ended"},
		{name: "Job failed", ec: connector(), res: resolved, w: observed{job: job(0, jobFailed)},
			phase: v1alpha1.PhaseFailed, status: metav1.ConditionFalse, reason: v1alpha1.ReasonJobFailed,
			message: "Job decoy failed: BackoffLimitExceeded Job has reached the specified backoff limit"},
		{name: "a Deployment and a Job (a mode change): the Deployment tells", ec: connector(), res: resolved,
			w:     observed{deployment: deployment(new(int32(1)), 1), job: job(0, jobFailed)},
			phase: v1alpha1.PhaseRunning, status: metav1.ConditionTrue, reason: v1alpha1.ReasonReplicasReady,
			message: "1/1 replicas of Deployment decoy ready"},
		{name: "rules not resolved, nothing runs", ec: connector(), res: unresolved,
			phase: v1alpha1.PhasePending, status: metav1.ConditionFalse, reason: v1alpha1.ReasonRulesNotResolved,
			message: "nothing runs until the rules resolve"},
		{name: "rules not resolved, the running Deployment tells", ec: connector(), res: unresolved,
			w:     observed{deployment: deployment(new(int32(1)), 1)},
			phase: v1alpha1.PhaseRunning, status: metav1.ConditionTrue, reason: v1alpha1.ReasonReplicasReady,
			message: "1/1 replicas of Deployment decoy ready"},
		{name: "rules resolved, no workload yet (a Job being replaced)", ec: connector(), res: resolved,
			phase: v1alpha1.PhasePending, status: metav1.ConditionFalse, reason: v1alpha1.ReasonRulesNotResolved,
			message: "no workload yet"},
		{name: "invalid name", ec: connector(), res: resolved, w: observed{invalid: "the name is too long"},
			phase: v1alpha1.PhasePending, status: metav1.ConditionFalse, reason: v1alpha1.ReasonInvalidName,
			message: "the name is too long"},
		{name: "invalid name, rules not resolved", ec: connector(), res: unresolved, w: observed{invalid: "the name is too long"},
			phase: v1alpha1.PhasePending, status: metav1.ConditionFalse, reason: v1alpha1.ReasonInvalidName,
			message: "the name is too long"},
		{name: "workload failed, nothing runs", ec: connector(), res: resolved, werr: errors.New("apply Deployment decoy: refused"),
			phase: v1alpha1.PhasePending, status: metav1.ConditionFalse, reason: v1alpha1.ReasonWorkloadFailed,
			message: "apply Deployment decoy: refused"},
		{name: "workload failed, the Deployment still runs", ec: connector(), res: resolved,
			w: observed{deployment: deployment(new(int32(1)), 1)}, werr: errors.New("apply Service decoy: refused"),
			phase: v1alpha1.PhaseRunning, status: metav1.ConditionFalse, reason: v1alpha1.ReasonWorkloadFailed,
			message: "apply Service decoy: refused"},
		{name: "workload failed beats an invalid name", ec: connector(), res: resolved,
			w: observed{invalid: "the name is too long"}, werr: errors.New("get Deployment decoy: timeout"),
			phase: v1alpha1.PhasePending, status: metav1.ConditionFalse, reason: v1alpha1.ReasonWorkloadFailed,
			message: "get Deployment decoy: timeout"},
		{name: "paused and running", ec: connector(paused), res: resolved, w: observed{deployment: deployment(new(int32(1)), 1)},
			phase: v1alpha1.PhasePaused, status: metav1.ConditionTrue, reason: v1alpha1.ReasonReplicasReady,
			message: "1/1 replicas of Deployment decoy ready"},
		{name: "paused and pending", ec: connector(paused), res: resolved, w: observed{deployment: deployment(new(int32(1)), 0)},
			phase: v1alpha1.PhasePaused, status: metav1.ConditionFalse, reason: v1alpha1.ReasonReplicasNotReady,
			message: "0/1 replicas of Deployment decoy ready"},
		{name: "paused Job running", ec: connector(paused), res: resolved, w: observed{job: job(1)},
			phase: v1alpha1.PhasePaused, status: metav1.ConditionTrue, reason: v1alpha1.ReasonJobRunning,
			message: "Job decoy has 1 ready pod(s)"},
		{name: "paused, the Job's end stays", ec: connector(paused), res: resolved, w: observed{job: job(0, jobComplete)},
			phase: v1alpha1.PhaseSucceeded, status: metav1.ConditionFalse, reason: v1alpha1.ReasonJobSucceeded,
			message: "Job decoy completed: every conversation has ended"},
		{name: "paused with nothing running is Pending", ec: connector(paused), res: unresolved,
			phase: v1alpha1.PhasePending, status: metav1.ConditionFalse, reason: v1alpha1.ReasonRulesNotResolved,
			message: "nothing runs until the rules resolve"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			phase, c := readiness(tc.ec, tc.res, tc.w, tc.werr)
			if phase != tc.phase {
				t.Errorf("phase %s, want %s", phase, tc.phase)
			}
			want := metav1.Condition{Type: v1alpha1.ConditionReady, Status: tc.status, Reason: tc.reason,
				Message: tc.message, ObservedGeneration: tc.ec.Generation}
			if c != want {
				t.Errorf("Ready\n got %+v\nwant %+v", c, want)
			}
		})
	}
}

func TestTerminating(t *testing.T) {
	for _, tc := range []struct {
		name    string
		grace   *metav1.Duration
		message string
	}{
		{name: "default grace period", message: "ending: live conversations get their ending and activities are flushed, for at most 30s"},
		{name: "own grace period", grace: &metav1.Duration{Duration: 2 * time.Minute},
			message: "ending: live conversations get their ending and activities are flushed, for at most 2m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ec := connector(func(ec *v1alpha1.ExternalConnector) { ec.Spec.GracePeriod = tc.grace })
			phase, c := terminating(ec)
			want := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse,
				Reason: v1alpha1.ReasonTerminating, Message: tc.message, ObservedGeneration: 4}
			if phase != v1alpha1.PhaseTerminating || c != want {
				t.Errorf("got %s %+v\nwant %s %+v", phase, c, v1alpha1.PhaseTerminating, want)
			}
		})
	}
}

func TestRulesResolved(t *testing.T) {
	for _, tc := range []struct {
		name    string
		res     resolution
		w       observed
		status  metav1.ConditionStatus
		reason  string
		message string
	}{
		{name: "resolved", res: resolved, w: observed{deployment: deployment(nil, 0)},
			status: metav1.ConditionTrue, reason: v1alpha1.ReasonResolved, message: "ConversationRules r (generation 2): Server TCP port 6379"},
		{name: "not resolved, nothing runs", res: unresolved,
			status: metav1.ConditionFalse, reason: v1alpha1.ReasonRulesNotFound, message: `ConversationRules "r" not found in namespace ns`},
		{name: "not resolved, the Deployment is kept", res: unresolved, w: observed{deployment: deployment(nil, 0)},
			status: metav1.ConditionFalse, reason: v1alpha1.ReasonRulesNotFound,
			message: `ConversationRules "r" not found in namespace ns; the running Deployment decoy is kept as it is until the rules resolve`},
		{name: "not resolved, the Job is kept", res: resolution{reason: v1alpha1.ReasonGroupAmbiguous, message: "2 enabled"},
			w:      observed{job: job(1)},
			status: metav1.ConditionFalse, reason: v1alpha1.ReasonGroupAmbiguous,
			message: "2 enabled; the running Job decoy is kept as it is until the rules resolve"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rulesResolved(connector(), tc.res, tc.w)
			want := metav1.Condition{Type: v1alpha1.ConditionRulesResolved, Status: tc.status, Reason: tc.reason,
				Message: tc.message, ObservedGeneration: 4}
			if c != want {
				t.Errorf("RulesResolved\n got %+v\nwant %+v", c, want)
			}
		})
	}
}

func TestReplicaCounts(t *testing.T) {
	for _, tc := range []struct {
		name            string
		w               observed
		replicas, ready int32
	}{
		{name: "nothing runs"},
		{name: "Deployment", w: observed{deployment: &appsv1.Deployment{Status: appsv1.DeploymentStatus{Replicas: 3, ReadyReplicas: 2}}},
			replicas: 3, ready: 2},
		{name: "Job", w: observed{job: &batchv1.Job{Status: batchv1.JobStatus{Active: 2, Ready: new(int32(1))}}}, replicas: 2, ready: 1},
		{name: "Job without ready count", w: observed{job: &batchv1.Job{Status: batchv1.JobStatus{Active: 1}}}, replicas: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r, ready := replicaCounts(tc.w); r != tc.replicas || ready != tc.ready {
				t.Errorf("replicas %d ready %d, want %d %d", r, ready, tc.replicas, tc.ready)
			}
		})
	}
}

// setStatus keeps what the rules last resolved to while they do not resolve, and a
// condition's lastTransitionTime while its status does not change.
func TestSetStatus(t *testing.T) {
	long := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
	ec := connector(func(ec *v1alpha1.ExternalConnector) {
		ec.Status.Conditions = []metav1.Condition{
			{Type: v1alpha1.ConditionRulesResolved, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonResolved, LastTransitionTime: long},
			{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReplicasReady, LastTransitionTime: long},
			{Type: v1alpha1.ConditionEngineConnected, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonEngineConnected, LastTransitionTime: long},
		}
		ec.Status.Activities.Total = 7
	})

	setStatus(ec, resolved, observed{deployment: deployment(new(int32(2)), 2)}, nil)
	st := ec.Status
	if st.Rules == nil || *st.Rules != serverTarget.rules || st.Mode != v1alpha1.ModeServer || st.Transport != v1alpha1.TransportTCP ||
		st.Port != 6379 || st.Endpoint != "decoy.ns.svc:6379/TCP" {
		t.Errorf("resolved: rules %+v mode %s transport %s port %d endpoint %s", st.Rules, st.Mode, st.Transport, st.Port, st.Endpoint)
	}
	if st.Phase != v1alpha1.PhaseRunning || st.Replicas != 2 || st.ReadyReplicas != 2 || st.ObservedGeneration != 4 {
		t.Errorf("phase %s replicas %d ready %d observedGeneration %d", st.Phase, st.Replicas, st.ReadyReplicas, st.ObservedGeneration)
	}
	for _, typ := range []string{v1alpha1.ConditionRulesResolved, v1alpha1.ConditionReady, v1alpha1.ConditionEngineConnected} {
		if c := meta.FindStatusCondition(st.Conditions, typ); c == nil || !c.LastTransitionTime.Equal(&long) {
			t.Errorf("%s: %+v, want its lastTransitionTime kept", typ, c)
		}
	}
	if st.Activities.Total != 7 {
		t.Errorf("the engine's counters changed: %+v", st.Activities)
	}

	// The rules go: what they resolved to stays, the running Deployment still tells.
	setStatus(ec, unresolved, observed{deployment: deployment(new(int32(2)), 0)}, nil)
	st = ec.Status
	if st.Rules == nil || *st.Rules != serverTarget.rules || st.Mode != v1alpha1.ModeServer || st.Endpoint != "decoy.ns.svc:6379/TCP" {
		t.Errorf("unresolved: rules %+v mode %s endpoint %s, want the last resolved ones kept", st.Rules, st.Mode, st.Endpoint)
	}
	if st.Phase != v1alpha1.PhasePending || st.Replicas != 0 || st.ReadyReplicas != 0 {
		t.Errorf("phase %s replicas %d ready %d", st.Phase, st.Replicas, st.ReadyReplicas)
	}
	for _, typ := range []string{v1alpha1.ConditionRulesResolved, v1alpha1.ConditionReady} {
		c := meta.FindStatusCondition(st.Conditions, typ)
		if c == nil || c.Status != metav1.ConditionFalse || c.LastTransitionTime.Equal(&long) {
			t.Errorf("%s: %+v, want False with a new lastTransitionTime", typ, c)
		}
	}
}

func TestWantedReplicas(t *testing.T) {
	server := resolution{target: &target{mode: v1alpha1.ModeServer}}
	client := resolution{target: &target{mode: v1alpha1.ModeClient}}
	three := int32(3)
	for _, tc := range []struct {
		name string
		ec   *v1alpha1.ExternalConnector
		res  resolution
		want int32
	}{
		{"server, default", connector(), server, 1},
		{"server, scaled", connector(func(ec *v1alpha1.ExternalConnector) { ec.Spec.Replicas = &three }), server, 3},
		{"client: one Job pod", connector(func(ec *v1alpha1.ExternalConnector) { ec.Spec.Replicas = &three }), client, 1},
		{"rules not resolved", connector(), resolution{}, 0},
	} {
		if got := wantedReplicas(tc.ec, tc.res); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
