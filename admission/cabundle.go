package admission

import (
	"bytes"
	"context"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/parley-dev/parley/engine/pki"
)

// caInjector keeps the operator's CA in the caBundle of every webhook of one
// ValidatingWebhookConfiguration, as cert-manager's cainjector does for its Certificates:
// when the configuration appears or changes (a helm upgrade or kubectl apply may blank the
// bundle) and when the CA is replaced. It runs on the leader only; every replica serves the
// same CA, read from one Secret.
type caInjector struct {
	client client.Client
	name   string
	// ca is the CA to inject, nil until one is loaded.
	ca func() []byte
}

// Reconcile patches caBundle where it differs from the CA, with the resourceVersion read:
// a concurrent change makes the patch fail and the reconcile run again on the new object.
func (r *caInjector) Reconcile(ctx context.Context, _ reconcile.Request) (ctrl.Result, error) {
	ca := r.ca()
	if ca == nil {
		// The CA's first load triggers another reconcile.
		return ctrl.Result{}, nil
	}
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := r.client.Get(ctx, types.NamespacedName{Name: r.name}, &vwc); err != nil {
		// Not installed (yet): its creation triggers a reconcile.
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	patch := client.MergeFromWithOptions(vwc.DeepCopy(), client.MergeFromWithOptimisticLock{})
	changed := 0
	for i := range vwc.Webhooks {
		if !bytes.Equal(vwc.Webhooks[i].ClientConfig.CABundle, ca) {
			vwc.Webhooks[i].ClientConfig.CABundle = ca
			changed++
		}
	}
	if changed == 0 {
		return ctrl.Result{}, nil
	}
	if err := r.client.Patch(ctx, &vwc, patch); err != nil {
		if apierrors.IsConflict(err) {
			// Changed since it was read: the change's watch event reconciles again.
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("inject the webhook CA into ValidatingWebhookConfiguration %s: %w", r.name, err)
	}
	log.FromContext(ctx).Info("injected the webhook CA", "validatingWebhookConfiguration", r.name, "webhooks", changed)
	return ctrl.Result{}, nil
}

// setupInjector adds the injector to mgr: it reconciles the configuration named name when
// it changes, and when certs loads a new CA.
func setupInjector(mgr ctrl.Manager, certs *pki.Manager, name string) error {
	// One pending notice is enough: the reconcile reads the CA then.
	caChanged := make(chan event.GenericEvent, 1)
	vwcKey := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	vwcKey.Name = name
	certs.CAChanged = func() {
		select {
		case caChanged <- event.GenericEvent{Object: vwcKey}:
		default:
		}
	}
	r := &caInjector{client: mgr.GetClient(), name: name, ca: certs.CAPEM}
	return ctrl.NewControllerManagedBy(mgr).
		Named("webhook-ca-injector").
		For(&admissionregistrationv1.ValidatingWebhookConfiguration{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetName() == name
		}))).
		WatchesRawSource(source.Channel(caChanged, &handler.EnqueueRequestForObject{})).
		Complete(r)
}
