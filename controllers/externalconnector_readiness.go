package controllers

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// The functions of this file say how a connector is doing from what was observed of it,
// without reading or writing anything: its phase, its Ready and RulesResolved conditions
// (type, status, reason, message and observedGeneration; lastTransitionTime is left to
// meta.SetStatusCondition against the current status) and its replica counts.

// rulesResolved is the RulesResolved condition of a resolution. Unresolved rules keep what
// runs as it is, and the message says so.
func rulesResolved(ec *v1alpha1.ExternalConnector, res resolution, w observed) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionRulesResolved, ObservedGeneration: ec.Generation,
		Status: metav1.ConditionTrue, Reason: res.reason, Message: res.message}
	if res.target != nil {
		return c
	}
	c.Status = metav1.ConditionFalse
	if obj := w.running(); obj != nil {
		c.Message += fmt.Sprintf("; the running %s %s is kept as it is until the rules resolve",
			kindOf(obj), obj.GetName())
	}
	return c
}

// readiness is the phase and the Ready condition of a connector that is not being deleted:
// what runs says how it is doing (workloadState), unless the workload could not be made
// (WorkloadFailed), cannot be made (InvalidName), or nothing runs until the rules resolve
// (RulesNotResolved). A paused connector whose workload runs, or waits to, is Paused.
func readiness(ec *v1alpha1.ExternalConnector, res resolution, w observed, werr error) (v1alpha1.Phase, metav1.Condition) {
	phase, ready := workloadState(w)
	switch {
	case werr != nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, v1alpha1.ReasonWorkloadFailed, werr.Error()
	case w.invalid != "":
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, v1alpha1.ReasonInvalidName, w.invalid
	case w.running() == nil && res.target == nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, v1alpha1.ReasonRulesNotResolved, "nothing runs until the rules resolve"
	}
	if ec.Spec.Paused && w.running() != nil && (phase == v1alpha1.PhaseRunning || phase == v1alpha1.PhasePending) {
		phase = v1alpha1.PhasePaused
	}
	ready.Type, ready.ObservedGeneration = v1alpha1.ConditionReady, ec.Generation
	return phase, ready
}

// workloadState is the phase and the Ready condition (status, reason, message) a workload
// gives: the Deployment's ready replicas, or how far the Job is.
func workloadState(w observed) (v1alpha1.Phase, metav1.Condition) {
	c := metav1.Condition{Status: metav1.ConditionFalse}
	switch {
	case w.deployment != nil:
		d := w.deployment
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		ready := d.Status.ReadyReplicas
		// A connector pod is ready when it serves and is connected to the engine (its
		// readiness probe): Ready means every replica wanted is.
		switch {
		case want == 0:
			c.Reason, c.Message = v1alpha1.ReasonScaledToZero, fmt.Sprintf("Deployment %s is scaled to 0 replicas", d.Name)
			return v1alpha1.PhasePending, c
		case ready >= want:
			c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonReplicasReady
			c.Message = fmt.Sprintf("%d/%d replicas of Deployment %s ready", ready, want, d.Name)
			return v1alpha1.PhaseRunning, c
		}
		c.Reason, c.Message = v1alpha1.ReasonReplicasNotReady, fmt.Sprintf("%d/%d replicas of Deployment %s ready", ready, want, d.Name)
		explainPods(&c, w.pods)
		if ready > 0 {
			return v1alpha1.PhaseRunning, c // some serve
		}
		return v1alpha1.PhasePending, c
	case w.job != nil:
		j := w.job
		if end, ok := jobFinished(j); ok {
			if end.Type == batchv1.JobComplete {
				c.Reason, c.Message = v1alpha1.ReasonJobSucceeded, fmt.Sprintf("Job %s completed: every conversation has ended", j.Name)
				return v1alpha1.PhaseSucceeded, c
			}
			c.Reason, c.Message = v1alpha1.ReasonJobFailed, fmt.Sprintf("Job %s failed: %s %s", j.Name, end.Reason, end.Message)
			return v1alpha1.PhaseFailed, c
		}
		if j.Status.Ready != nil && *j.Status.Ready > 0 {
			c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonJobRunning
			c.Message = fmt.Sprintf("Job %s has %d ready pod(s)", j.Name, *j.Status.Ready)
			return v1alpha1.PhaseRunning, c
		}
		c.Reason, c.Message = v1alpha1.ReasonJobPending, fmt.Sprintf("Job %s has no ready pod yet", j.Name)
		explainPods(&c, w.pods)
		return v1alpha1.PhasePending, c
	}
	c.Reason, c.Message = v1alpha1.ReasonRulesNotResolved, "no workload yet"
	return v1alpha1.PhasePending, c
}

// explainPods adds to a Ready condition that is not true why the first pod in trouble is:
// one that cannot be scheduled (reason Unschedulable: a hostPort taken, no node matching), a
// container that waits (ContainerWaiting: an image that cannot be pulled, a crash loop), or a
// running pod whose readiness probe fails (it is not connected to the engine, or does not
// serve yet). Pods being deleted are left out.
func explainPods(c *metav1.Condition, pods []corev1.Pod) {
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil || podReady(p) || p.Status.Phase == corev1.PodSucceeded {
			continue
		}
		for _, pc := range p.Status.Conditions {
			if pc.Type == corev1.PodScheduled && pc.Status == corev1.ConditionFalse {
				c.Reason = v1alpha1.ReasonUnschedulable
				c.Message += fmt.Sprintf("; pod %s cannot be scheduled: %s", p.Name, firstNonEmpty(pc.Message, pc.Reason))
				return
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" {
				c.Reason = v1alpha1.ReasonContainerWaiting
				c.Message += fmt.Sprintf("; pod %s: container %s is waiting: %s", p.Name, cs.Name, w.Reason)
				if w.Message != "" {
					c.Message += ": " + w.Message
				}
				return
			}
		}
		if p.Status.Phase == corev1.PodRunning {
			c.Message += fmt.Sprintf("; pod %s runs but is not ready: it is not connected to the engine or does not serve yet (its /readyz says which)", p.Name)
			return
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// terminating is the phase and the Ready condition of a deleted connector while it ends.
func terminating(ec *v1alpha1.ExternalConnector) (v1alpha1.Phase, metav1.Condition) {
	return v1alpha1.PhaseTerminating, metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonTerminating, ObservedGeneration: ec.Generation,
		Message: fmt.Sprintf("ending: live conversations get their ending and activities are flushed, for at most %s", gracePeriod(ec)),
	}
}

// wantedReplicas is how many pods the connector should run: spec.replicas (default 1) in
// server mode, the one pod of its Job in client mode, none once its rules do not resolve.
func wantedReplicas(ec *v1alpha1.ExternalConnector, res resolution) int32 {
	switch {
	case res.target == nil:
		return 0
	case res.target.mode == v1alpha1.ModeClient:
		return 1
	case ec.Spec.Replicas != nil:
		return *ec.Spec.Replicas
	}
	return 1
}

// replicaCounts are the pods the workload has, and those of them ready.
func replicaCounts(w observed) (replicas, ready int32) {
	switch {
	case w.deployment != nil:
		return w.deployment.Status.Replicas, w.deployment.Status.ReadyReplicas
	case w.job != nil:
		if w.job.Status.Ready != nil {
			ready = *w.job.Status.Ready
		}
		return w.job.Status.Active, ready
	}
	return 0, 0
}

// jobFinished returns the condition that ended a Job, if any.
func jobFinished(job *batchv1.Job) (batchv1.JobCondition, bool) {
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return c, true
		}
	}
	return batchv1.JobCondition{}, false
}

func kindOf(obj client.Object) string {
	switch obj.(type) {
	case *appsv1.Deployment:
		return "Deployment"
	case *batchv1.Job:
		return "Job"
	}
	return fmt.Sprintf("%T", obj)
}
