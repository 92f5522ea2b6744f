package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// endPoll is how often a graceful end is checked while it is not done.
const endPoll = time.Second

// end runs the graceful end of a deleted connector: phase Terminating, the Ender until it is
// done or the grace period after the deletion has passed, then the finalizer goes and owner
// references take the children with the connector.
func (r *ExternalConnectorReconciler) end(ctx context.Context, ec *v1alpha1.ExternalConnector) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(ec, v1alpha1.FinalizerGracefulEnd) {
		return ctrl.Result{}, nil
	}
	grace := gracePeriod(ec)
	old := ec.DeepCopy()
	phase, ready := terminating(ec)
	ec.Status.Phase = phase
	meta.SetStatusCondition(&ec.Status.Conditions, ready)
	if err := r.writeStatus(ctx, old, ec); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if old.Status.Phase != v1alpha1.PhaseTerminating {
		r.event(ec, nil, corev1.EventTypeNormal, v1alpha1.ReasonTerminating, "End", fmt.Sprintf("ending the connector gracefully (at most %s)", grace))
	}

	done, err := true, error(nil)
	if r.Ender != nil {
		done, err = r.Ender.End(ctx, ec)
	}
	if err != nil {
		log.FromContext(ctx).Error(err, "graceful end")
		r.event(ec, nil, corev1.EventTypeWarning, v1alpha1.ReasonEndFailed, "End", fmt.Sprintf("graceful end: %v", err))
	}
	if !done || err != nil {
		// A failing End is retried like one not done yet, so that the grace period bounds both.
		if left := time.Until(ec.DeletionTimestamp.Add(grace)); left > 0 {
			return ctrl.Result{RequeueAfter: min(endPoll, left)}, nil
		}
		r.event(ec, nil, corev1.EventTypeWarning, v1alpha1.ReasonGracePeriodExceeded, "End", fmt.Sprintf(
			"the graceful end did not finish within %s: removing the connector anyway", grace))
	}

	patch := client.MergeFromWithOptions(ec.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(ec, v1alpha1.FinalizerGracefulEnd)
	if err := r.Patch(ctx, ec, patch); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	r.event(ec, nil, corev1.EventTypeNormal, v1alpha1.ReasonEnded, "End", "the connector has ended; its workload goes with it")
	return ctrl.Result{}, nil
}
