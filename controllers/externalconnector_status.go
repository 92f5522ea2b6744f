package controllers

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// setStatus fills in everything the controller reports; the engine's fields (connections,
// activities, lastActivityTime, EngineConnected) are left as they are.
func (r *ExternalConnectorReconciler) setStatus(ec *v1alpha1.ExternalConnector, res resolution, w observed, werr error) {
	st := &ec.Status
	gen := ec.Generation

	resolved := metav1.Condition{Type: v1alpha1.ConditionRulesResolved, ObservedGeneration: gen,
		Status: metav1.ConditionTrue, Reason: res.reason, Message: res.message}
	if t := res.target; t != nil {
		ref := t.rules
		st.Rules = &ref
		st.Mode, st.Transport, st.Port = t.mode, t.transport, t.port
		st.Endpoint = t.endpoint(ec)
	} else {
		resolved.Status = metav1.ConditionFalse
		if obj := w.running(); obj != nil {
			resolved.Message += fmt.Sprintf("; the running %s %s is kept as it is until the rules resolve",
				kindOf(obj), obj.GetName())
		}
	}
	meta.SetStatusCondition(&st.Conditions, resolved)

	phase, ready := workloadState(w)
	st.Replicas, st.ReadyReplicas = 0, 0
	switch {
	case w.deployment != nil:
		st.Replicas, st.ReadyReplicas = w.deployment.Status.Replicas, w.deployment.Status.ReadyReplicas
	case w.job != nil:
		st.Replicas = w.job.Status.Active
		if w.job.Status.Ready != nil {
			st.ReadyReplicas = *w.job.Status.Ready
		}
	}
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
	st.Phase = phase
	ready.Type, ready.ObservedGeneration = v1alpha1.ConditionReady, gen
	meta.SetStatusCondition(&st.Conditions, ready)
	st.ObservedGeneration = gen
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

// workloadState is the phase and the Ready condition a workload gives.
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

// patchStatus writes the status if it changed. The optimistic lock keeps the engine's fields,
// written by another writer, from being overwritten with stale values.
func (r *ExternalConnectorReconciler) patchStatus(ctx context.Context, old, ec *v1alpha1.ExternalConnector) error {
	if equality.Semantic.DeepEqual(old.Status, ec.Status) {
		return nil
	}
	patch := client.MergeFromWithOptions(old, client.MergeFromWithOptimisticLock{})
	if err := r.Status().Patch(ctx, ec, patch); err != nil {
		return fmt.Errorf("update status of ExternalConnector %s/%s: %w", ec.Namespace, ec.Name, err)
	}
	return nil
}

// announce records events for changes of rules resolution and of terminal phases.
func (r *ExternalConnectorReconciler) announce(ctx context.Context, old, ec *v1alpha1.ExternalConnector, res resolution, w observed) {
	var related runtime.Object
	if res.rules != nil {
		related = res.rules
	}
	before := meta.FindStatusCondition(old.Status.Conditions, v1alpha1.ConditionRulesResolved)
	now := meta.FindStatusCondition(ec.Status.Conditions, v1alpha1.ConditionRulesResolved)
	if now != nil && (before == nil || before.Status != now.Status || before.Reason != now.Reason || before.Message != now.Message) {
		if now.Status == metav1.ConditionTrue {
			r.event(ec, related, corev1.EventTypeNormal, now.Reason, "Resolve", now.Message)
		} else {
			r.event(ec, related, corev1.EventTypeWarning, now.Reason, "Resolve", now.Message)
		}
		log.FromContext(ctx).Info("rules resolution", "resolved", now.Status, "reason", now.Reason)
	}
	if old.Status.Phase != ec.Status.Phase {
		ready := meta.FindStatusCondition(ec.Status.Conditions, v1alpha1.ConditionReady)
		switch ec.Status.Phase {
		case v1alpha1.PhaseSucceeded:
			r.event(ec, w.job, corev1.EventTypeNormal, string(v1alpha1.PhaseSucceeded), "Observe", ready.Message)
		case v1alpha1.PhaseFailed:
			r.event(ec, w.job, corev1.EventTypeWarning, string(v1alpha1.PhaseFailed), "Observe", ready.Message)
		}
	}
}
