package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/statusapply"
	"github.com/parley-dev/parley/internal/text"
	"github.com/parley-dev/parley/sink"
)

// ActivitySinkFieldOwner is the controller's field manager of ActivitySink status: it owns
// type, Ready and observedGeneration; the engine owns the counters.
const ActivitySinkFieldOwner = client.FieldOwner("parley-activitysink-controller")

// ActivitySinkReconciler validates ActivitySinks: their spec (sink.Validate) and the
// Secrets they name, which must exist and hold the keys the destination reads. It reports
// the result as Ready with a reason; the engine delivers.
type ActivitySinkReconciler struct {
	client.Client
	// APIReader reads Secrets uncached: the manager caches only their metadata.
	APIReader client.Reader
}

// +kubebuilder:rbac:groups=parley.io,resources=activitysinks,verbs=get;list;watch
// +kubebuilder:rbac:groups=parley.io,resources=activitysinks/status,verbs=get;update;patch

// Reconcile validates one ActivitySink and applies its Ready condition.
func (r *ActivitySinkReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var s v1alpha1.ActivitySink
	if err := r.Get(ctx, req.NamespacedName, &s); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	cond, err := r.readiness(ctx, &s)
	if err != nil {
		return ctrl.Result{}, err
	}
	cond.ObservedGeneration = s.Generation
	if before := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.ConditionReady); before != nil &&
		before.Status == cond.Status && before.Reason == cond.Reason && before.Message == cond.Message {
		cond.LastTransitionTime = before.LastTransitionTime
	} else {
		cond.LastTransitionTime = metav1.Now()
	}
	conds, err := statusapply.Conditions([]metav1.Condition{cond}, v1alpha1.ConditionReady)
	if err != nil {
		return ctrl.Result{}, err
	}
	fields := statusapply.Fields{"conditions": conds, "observedGeneration": s.Generation}
	if t := sink.Type(&s.Spec); t != "" {
		fields["type"] = t
	}
	var got v1alpha1.ActivitySink
	if err := statusapply.ApplyKind(ctx, r.Client, "ActivitySink", s.Namespace, s.Name, &got, ActivitySinkFieldOwner, fields); err != nil {
		return ctrl.Result{}, fmt.Errorf("apply status of ActivitySink %s: %w", req.NamespacedName, err)
	}
	return ctrl.Result{}, nil
}

// readiness is the Ready condition for s: the first thing that keeps it from working.
func (r *ActivitySinkReconciler) readiness(ctx context.Context, s *v1alpha1.ActivitySink) (metav1.Condition, error) {
	cond := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse}
	if errs := sink.Validate(&s.Spec, field.NewPath("spec")); len(errs) > 0 {
		cond.Reason, cond.Message = v1alpha1.ReasonSinkInvalid, text.Truncate(errorLines(errs), maxConditionMessage)
		return cond, nil
	}
	var missing, keys []string
	secrets := map[string]*corev1.Secret{}
	for _, need := range sink.SecretsNeeded(&s.Spec, field.NewPath("spec")) {
		sec, seen := secrets[need.Name]
		if !seen {
			sec = &corev1.Secret{}
			if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: need.Name}, sec); apierrors.IsNotFound(err) {
				sec = nil
			} else if err != nil {
				return cond, fmt.Errorf("read Secret %s/%s: %w", s.Namespace, need.Name, err)
			}
			secrets[need.Name] = sec
		}
		switch {
		case sec == nil:
			if !seen {
				missing = append(missing, fmt.Sprintf("%s: Secret %q not found", need.Path, need.Name))
			}
		case len(sec.Data[need.Key]) == 0:
			keys = append(keys, fmt.Sprintf("%s: Secret %q has no key %q", need.Path, need.Name, need.Key))
		}
	}
	switch {
	case len(missing) > 0:
		cond.Reason, cond.Message = v1alpha1.ReasonSecretNotFound, strings.Join(append(missing, keys...), "; ")
	case len(keys) > 0:
		cond.Reason, cond.Message = v1alpha1.ReasonSecretKeyMissing, strings.Join(keys, "; ")
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, v1alpha1.ReasonSinkConfigured
		cond.Message = sink.Type(&s.Spec) + " destination configured"
	}
	return cond, nil
}

// errorLines is every field error, "; "-separated.
func errorLines(errs field.ErrorList) string {
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "; ")
}

// sinksNaming maps a Secret to the ActivitySinks of its namespace, so that a Secret created
// or changed after its sink is validated again.
func (r *ActivitySinkReconciler) sinksNaming(ctx context.Context, obj client.Object) []reconcile.Request {
	var list v1alpha1.ActivitySinkList
	if err := r.List(ctx, &list, client.InNamespace(obj.GetNamespace())); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, key := range sink.ReadersOf(list.Items, obj.GetName()) {
		out = append(out, reconcile.Request{NamespacedName: key})
	}
	return out
}

// SetupWithManager registers the reconciler.
func (r *ActivitySinkReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ActivitySink{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.sinksNaming), builder.OnlyMetadata).
		Named("activitysink").
		Complete(r)
}
