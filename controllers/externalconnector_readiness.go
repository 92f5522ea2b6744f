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
		switch {
		case ready > 0:
			c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonReplicasReady
			c.Message = fmt.Sprintf("%d/%d replicas of Deployment %s ready", ready, want, d.Name)
			return v1alpha1.PhaseRunning, c
		case want == 0:
			c.Reason, c.Message = v1alpha1.ReasonScaledToZero, fmt.Sprintf("Deployment %s is scaled to 0 replicas", d.Name)
		default:
			c.Reason, c.Message = v1alpha1.ReasonReplicasNotReady, fmt.Sprintf("0/%d replicas of Deployment %s ready", want, d.Name)
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
		if j.Status.Active > 0 {
			c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonJobRunning
			c.Message = fmt.Sprintf("Job %s has %d active pod(s)", j.Name, j.Status.Active)
			return v1alpha1.PhaseRunning, c
		}
		c.Reason, c.Message = v1alpha1.ReasonJobPending, fmt.Sprintf("Job %s has no active pod yet", j.Name)
		return v1alpha1.PhasePending, c
	}
	c.Reason, c.Message = v1alpha1.ReasonRulesNotResolved, "no workload yet"
	return v1alpha1.PhasePending, c
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
