package controllers

import (
	"context"
	"fmt"
	"sort"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"golang.org/x/sync/errgroup"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// indexActivityConnector indexes Activities' metadata by their connector label.
const indexActivityConnector = "activity.connector"

// maxDeletesPerPass bounds one reconcile's work; a larger backlog is taken in further passes.
const maxDeletesPerPass = 500

// deletesInFlight bounds the concurrent deletes of one pass.
const deletesInFlight = 8

// RetentionReconciler keeps each connector's Activities within spec.activities.maxCount and
// ttl, deleting the oldest first. It caches only the Activities' metadata, indexed by
// connector, so that 100,000 Activities cost little memory and each pass reads only one
// connector's.
type RetentionReconciler struct {
	client.Client
	// Defaults apply where a connector's spec.activities leaves maxCount or ttl unset, and
	// their TTL to the Activities a deleted connector left behind (keepOnDelete).
	Defaults Retention
	// Now is the clock; tests may replace it.
	Now func() time.Time
}

// Retention is the operator's default Activity retention. Zero fields mean no limit.
type Retention struct {
	MaxCount int32
	TTL      time.Duration
}

// retentionOf is the retention a connector's Activities get: its own maxCount and ttl, each
// defaulting to the operator's; a nil maxCount or a zero ttl means no such limit (ttl: 0s
// turns the default off).
func retentionOf(p v1alpha1.ActivityPolicy, d Retention) (maxCount *int32, ttl time.Duration) {
	maxCount = p.MaxCount
	if maxCount == nil && d.MaxCount > 0 {
		maxCount = &d.MaxCount
	}
	ttl = d.TTL
	if p.TTL != nil {
		ttl = p.TTL.Duration
	}
	return maxCount, max(ttl, 0)
}

// +kubebuilder:rbac:groups=parley.io,resources=activities,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=parley.io,resources=externalconnectors,verbs=get;list;watch

// Reconcile applies one connector's retention policy.
func (r *RetentionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var xc v1alpha1.ExternalConnector
	maxCount, ttl := (*int32)(nil), r.Defaults.TTL
	switch err := r.Get(ctx, req.NamespacedName, &xc); {
	case apierrors.IsNotFound(err):
		// What is left of a deleted connector's Activities was kept on delete: they
		// expire after the operator's default ttl. The others go with their owner.
	case err != nil:
		return ctrl.Result{}, err
	default:
		maxCount, ttl = retentionOf(xc.Spec.Activities, r.Defaults)
	}
	if maxCount == nil && ttl == 0 {
		return ctrl.Result{}, nil
	}
	var list metav1.PartialObjectMetadataList
	list.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("ActivityList"))
	if err := r.List(ctx, &list, client.InNamespace(req.Namespace), client.MatchingFields{indexActivityConnector: req.Name}); err != nil {
		return ctrl.Result{}, fmt.Errorf("list the Activities of %s: %w", req.NamespacedName, err)
	}
	items := list.Items
	// Oldest first; names carry the sequence, so they order activities of the same second.
	sort.Slice(items, func(i, j int) bool {
		ti, tj := items[i].CreationTimestamp, items[j].CreationTimestamp
		if !ti.Equal(&tj) {
			return ti.Before(&tj)
		}
		return items[i].Name < items[j].Name
	})
	now := r.now()
	expired := 0
	var requeue time.Duration
	if ttl > 0 {
		for expired < len(items) && now.Sub(items[expired].CreationTimestamp.Time) >= ttl {
			expired++
		}
		if expired < len(items) {
			requeue = ttl - now.Sub(items[expired].CreationTimestamp.Time) + time.Second
		}
	}
	excess := 0
	if maxCount != nil {
		excess = len(items) - int(*maxCount)
	}
	doomed := items[:min(max(expired, excess, 0), len(items))]
	if len(doomed) > maxDeletesPerPass {
		doomed, requeue = doomed[:maxDeletesPerPass], time.Millisecond
	}
	// Deletes are independent: a few in flight hide the API server's latency, and the bound
	// keeps a backlog from flooding it.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(deletesInFlight)
	for i := range doomed {
		a := &doomed[i]
		g.Go(func() error {
			if err := r.Delete(gctx, a, client.Preconditions{UID: &a.UID}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete Activity %s/%s: %w", a.Namespace, a.Name, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return ctrl.Result{}, err
	}
	if len(doomed) > 0 {
		log.FromContext(ctx).V(1).Info("activities expired", "deleted", len(doomed), "kept", len(items)-len(doomed))
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

func (r *RetentionReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// SetupWithManager watches ExternalConnectors, and Activities' metadata mapped to their
// connector, so that every new Activity re-checks its connector's count (the work queue
// merges bursts into one pass).
func (r *RetentionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	activityMeta := &metav1.PartialObjectMetadata{}
	activityMeta.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("Activity"))
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), activityMeta, indexActivityConnector, func(o client.Object) []string {
		if c := o.GetLabels()[v1alpha1.LabelConnector]; c != "" {
			return []string{c}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("index Activities by connector: %w", err)
	}
	toConnector := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		c := o.GetLabels()[v1alpha1.LabelConnector]
		if c == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: c}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("activity-retention").
		For(&v1alpha1.ExternalConnector{}).
		WatchesMetadata(activityMeta, toConnector, builder.WithPredicates()).
		Complete(r)
}
