package controllers

import (
	"context"
	"fmt"

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
// activities, lastActivityTime, EngineConnected) are left as they are. The conditions'
// lastTransitionTime changes only with their status.
func setStatus(ec *v1alpha1.ExternalConnector, res resolution, w observed, werr error) {
	st := &ec.Status
	if t := res.target; t != nil {
		ref := t.rules
		st.Rules = &ref
		st.Mode, st.Transport, st.Port = t.mode, t.transport, t.port
		st.Endpoint = t.endpoint(ec)
	}
	meta.SetStatusCondition(&st.Conditions, rulesResolved(ec, res, w))
	st.Replicas, st.ReadyReplicas = replicaCounts(w)
	phase, ready := readiness(ec, res, w, werr)
	st.Phase = phase
	meta.SetStatusCondition(&st.Conditions, ready)
	st.ObservedGeneration = ec.Generation
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
