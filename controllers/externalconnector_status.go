package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/statusapply"
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
	st.Ready = fmt.Sprintf("%d/%d", st.ReadyReplicas, wantedReplicas(ec, res))
	st.Selector = labels.SelectorFromSet(v1alpha1.ConnectorLabels(ec.Name)).String()
	phase, ready := readiness(ec, res, w, werr)
	st.Phase = phase
	meta.SetStatusCondition(&st.Conditions, ready)
	st.ObservedGeneration = ec.Generation
}

// writeStatus applies the controller's part of the status if it changed since before (the
// connector as read), and reads the connector back into ec. Server-side apply under the
// controller's field manager leaves the engine's fields to the engine: no lock, no conflict.
func (r *ExternalConnectorReconciler) writeStatus(ctx context.Context, before, ec *v1alpha1.ExternalConnector) error {
	if equality.Semantic.DeepEqual(before.Status, ec.Status) {
		return nil
	}
	fields, err := ownedStatus(&ec.Status)
	if err == nil {
		err = statusapply.Apply(ctx, r.Client, ec, fieldOwner, fields)
	}
	if err != nil {
		return fmt.Errorf("apply status of ExternalConnector %s/%s: %w", ec.Namespace, ec.Name, err)
	}
	return nil
}

// rulesEditedInPlace says whether res resolves the connector to other rules (a new
// generation, another ConversationRules of its group) with the same mode, transport and
// port as its status says: an edit that changes what the pods run, not the workload. Not
// after a reconcile that failed to apply the workload: the early write knows of no such
// error, and would clear the Ready condition's WorkloadFailed until the write at the end
// set it again.
func rulesEditedInPlace(ec *v1alpha1.ExternalConnector, res resolution) bool {
	t, st := res.target, &ec.Status
	if ready := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); ready != nil && ready.Reason == v1alpha1.ReasonWorkloadFailed {
		return false
	}
	return t != nil && st.Rules != nil && *st.Rules != t.rules &&
		st.Mode == t.mode && st.Transport == t.transport && st.Port == t.port && st.Endpoint == t.endpoint(ec)
}

// writeRulesEarly writes the status as it is with res's rules, from the workload as it is
// now, and returns what it wrote; ec is read back from the write.
func (r *ExternalConnectorReconciler) writeRulesEarly(ctx context.Context, ec *v1alpha1.ExternalConnector, res resolution) (*v1alpha1.ExternalConnector, error) {
	before := ec.DeepCopy()
	w, err := r.observe(ctx, ec)
	if err != nil {
		return nil, err
	}
	if w.pods, err = r.podsOf(ctx, ec); err != nil {
		return nil, err
	}
	setStatus(ec, res, w, nil)
	if err := r.writeStatus(ctx, before, ec); err != nil {
		return nil, err
	}
	return ec.DeepCopy(), nil
}

// ownedStatus is every status field the controller owns: the phase, the RulesResolved and
// Ready conditions, what the rules resolved to (rules, mode, transport, port, endpoint), the
// replica counts, ready and selector (the READY column and the scale subresource) and
// observedGeneration. The engine owns the rest: the EngineConnected
// condition, connections, datagrams, activities and lastActivityTime.
func ownedStatus(st *v1alpha1.ExternalConnectorStatus) (statusapply.Fields, error) {
	conditions, err := statusapply.Conditions(st.Conditions, v1alpha1.ConditionRulesResolved, v1alpha1.ConditionReady)
	if err != nil {
		return nil, err
	}
	f := statusapply.Fields{
		"conditions": conditions,
		// Counts of zero are applied, not left out: left out, they would keep the value an
		// earlier version of the operator wrote without server-side apply.
		"replicas":           int64(st.Replicas),
		"readyReplicas":      int64(st.ReadyReplicas),
		"observedGeneration": st.ObservedGeneration,
	}
	// setStatus always fills these two in.
	if st.Ready != "" {
		f["ready"] = st.Ready
	}
	if st.Selector != "" {
		f["selector"] = st.Selector
	}
	if st.Phase != "" {
		f["phase"] = string(st.Phase)
	}
	// Set once the rules first resolve, then kept: a connector whose rules never resolved
	// has none of them.
	if st.Rules != nil {
		if f["rules"], err = statusapply.Object(st.Rules); err != nil {
			return nil, err
		}
	}
	if st.Mode != "" {
		f["mode"] = string(st.Mode)
	}
	if st.Transport != "" {
		f["transport"] = string(st.Transport)
	}
	if st.Port != 0 {
		f["port"] = int64(st.Port)
	}
	if st.Endpoint != "" {
		f["endpoint"] = st.Endpoint
	}
	return f, nil
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
