// Package controllers holds the operator's reconcilers, one per kind.
package controllers

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

const (
	// maxConditionMessage keeps a status readable (and well under the API's limits) when a
	// broken spec has hundreds of errors.
	maxConditionMessage = 8 << 10
)

// ConversationRulesReconciler validates ConversationRules with the connector's compiler, so
// that what the cluster calls valid is exactly what a connector can run.
type ConversationRulesReconciler struct {
	client.Client
	Recorder events.EventRecorder
}

// +kubebuilder:rbac:groups=parley.io,resources=conversationrules,verbs=get;list;watch
// +kubebuilder:rbac:groups=parley.io,resources=conversationrules/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile compiles the rules and records the result in status and in the
// parley_conversationrules_valid metric.
func (r *ConversationRulesReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var cr v1alpha1.ConversationRules
	if err := r.Get(ctx, req.NamespacedName, &cr); err != nil {
		if apierrors.IsNotFound(err) {
			rulesValid.DeleteLabelValues(req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	_, errs := rules.Compile(cr.Name, cr.Generation, &cr.Spec)
	cond := ValidCondition(cr.Generation, errs)
	if cond.Status == metav1.ConditionTrue {
		rulesValid.WithLabelValues(cr.Namespace, cr.Name).Set(1)
	} else {
		rulesValid.WithLabelValues(cr.Namespace, cr.Name).Set(0)
	}
	before := meta.FindStatusCondition(cr.Status.Conditions, v1alpha1.ConditionValid)
	changed := before == nil || before.Status != cond.Status || before.Message != cond.Message

	patch := client.MergeFrom(cr.DeepCopy())
	cr.Status.ObservedGeneration = cr.Generation
	cr.Status.Hash = rules.Hash(&cr.Spec)
	cr.Status.RuleCount = int32(rules.Count(&cr.Spec))
	meta.SetStatusCondition(&cr.Status.Conditions, cond)
	if err := r.Status().Patch(ctx, &cr, patch); err != nil {
		return ctrl.Result{}, fmt.Errorf("update status of ConversationRules %s: %w", req.NamespacedName, err)
	}
	if changed {
		if cond.Status == metav1.ConditionTrue {
			r.Recorder.Eventf(&cr, nil, "Normal", v1alpha1.ReasonCompiled, "Validate", "%s", cond.Message)
		} else {
			r.Recorder.Eventf(&cr, nil, "Warning", cond.Reason, "Validate", "%s", cond.Message)
		}
		log.FromContext(ctx).Info("rules validated", "valid", cond.Status, "reason", cond.Reason, "errors", len(errs))
	}
	return ctrl.Result{}, nil
}

// ValidCondition is the Valid condition for a compile result: True with a count, or False
// with every error and its field path, and a reason naming the kind of the first error.
func ValidCondition(generation int64, errs field.ErrorList) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionValid, ObservedGeneration: generation}
	if len(errs) == 0 {
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, v1alpha1.ReasonCompiled, "the rules compile"
		return c
	}
	c.Status, c.Reason = metav1.ConditionFalse, ReasonFor(errs[0].Type)
	var b strings.Builder
	fmt.Fprintf(&b, "%d error(s): ", len(errs))
	for i, e := range errs {
		line := e.Error()
		if b.Len()+len(line) > maxConditionMessage {
			fmt.Fprintf(&b, "; and %d more (parley check lists them all)", len(errs)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(line)
	}
	c.Message = b.String()
	return c
}

// ReasonFor names a kind of field error as a condition reason.
func ReasonFor(t field.ErrorType) string {
	switch t {
	case field.ErrorTypeRequired:
		return "RequiredValue"
	case field.ErrorTypeDuplicate:
		return "DuplicateValue"
	case field.ErrorTypeNotFound:
		return "NotFound"
	case field.ErrorTypeNotSupported:
		return "UnsupportedValue"
	case field.ErrorTypeTooLong, field.ErrorTypeTooMany:
		return "TooLong"
	case field.ErrorTypeForbidden:
		return "Forbidden"
	default:
		return "InvalidValue"
	}
}

// SetupWithManager registers the reconciler; status-only updates do not trigger it.
func (r *ConversationRulesReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ConversationRules{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("conversationrules").
		Complete(r)
}
