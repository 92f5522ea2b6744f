package controllers

import (
	"context"
	"fmt"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/text"
)

// fieldOwner is the server-side apply field manager of everything the controller applies.
const fieldOwner = client.FieldOwner("parley-externalconnector")

// Ender ends a deleted connector gracefully: its pods stop accepting, give live conversations
// their ending, and flush their activities. The engine implements it; End is called again
// until it reports done or the connector's grace period has passed.
type Ender interface {
	End(ctx context.Context, connector *v1alpha1.ExternalConnector) (done bool, err error)
}

// ExternalConnectorReconciler turns each ExternalConnector into its engine Secret, a
// Deployment and Service (server mode) or a Job (client mode), and reports on them.
type ExternalConnectorReconciler struct {
	client.Client
	// APIReader reads straight from the API server: Secrets, so that the operator does not
	// cache every Secret of the cluster, and the connector, whose status is computed against
	// the one last written.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Defaults  Defaults
	// Ender ends deleted connectors gracefully; nil ends them at once.
	Ender Ender
}

// +kubebuilder:rbac:groups=parley.io,resources=externalconnectors,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=parley.io,resources=externalconnectors/status,verbs=get;patch
// +kubebuilder:rbac:groups=parley.io,resources=externalconnectors/finalizers,verbs=update
// +kubebuilder:rbac:groups=parley.io,resources=conversationrules,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// Reconcile resolves the connector's rules, keeps its workload in shape and reports status.
// Its steps, each idempotent: the finalizer; the rules (externalconnector_rules.go); the
// engine Secret (_credentials.go) and the workload (_children.go); the status, computed by
// the pure functions of _readiness.go and applied by _status.go. A deleted connector ends
// gracefully instead (_end.go).
func (r *ExternalConnectorReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	// Read from the API server, not the cache: the status written last time is what this
	// one is computed against (lastTransitionTime, the rules kept while unresolved, events
	// on changes), and a reconcile often follows the previous one before the cache has its
	// status write.
	var ec v1alpha1.ExternalConnector
	if err := r.APIReader.Get(ctx, req.NamespacedName, &ec); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ec.DeletionTimestamp.IsZero() {
		return r.end(ctx, &ec)
	}
	if !controllerutil.ContainsFinalizer(&ec, v1alpha1.FinalizerGracefulEnd) {
		patch := client.MergeFromWithOptions(ec.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(&ec, v1alpha1.FinalizerGracefulEnd)
		if err := r.Patch(ctx, &ec, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer to ExternalConnector %s: %w", req.NamespacedName, err)
		}
	}
	old := ec.DeepCopy()

	res, err := r.resolve(ctx, &ec)
	if err != nil {
		return ctrl.Result{}, err
	}
	// What the status says last, for the write at the end; old stays what was read, for the
	// events that announce the changes.
	written := old
	if rulesEditedInPlace(old, res) {
		// The engine pushes rules to the pods once status.rules names them: say so now,
		// a few API round trips before the workload's applies, which the edit leaves as
		// they are (same mode, transport and port).
		if written, err = r.writeRulesEarly(ctx, &ec, res); err != nil {
			return ctrl.Result{}, err
		}
	}
	w, caPending, werr := r.workload(ctx, &ec, res)
	if werr != nil {
		r.event(&ec, nil, corev1.EventTypeWarning, v1alpha1.ReasonWorkloadFailed, "Reconcile", werr.Error())
		if w.running() == nil {
			// Report on what runs, not on what this attempt did not get to.
			if seen, err := r.observe(ctx, &ec); err == nil {
				seen.invalid = w.invalid
				w = seen
			}
		}
	}
	if w.pods, err = r.podsOf(ctx, &ec); err != nil {
		return ctrl.Result{}, err
	}
	setStatus(&ec, res, w, werr)
	if err := r.writeStatus(ctx, written, &ec); err != nil {
		return ctrl.Result{}, err
	}
	r.announce(ctx, old, &ec, res, w)
	if caPending && werr == nil {
		// The engine Secret lacks the engine's CA, not loaded yet: come back for it soon
		// rather than wait for it here. Nothing else would bring a reconcile when it loads.
		return ctrl.Result{RequeueAfter: caRetry}, nil
	}
	return ctrl.Result{}, werr
}

// event records an event about the connector, its note cut to what the API takes.
// related names the object the event is about besides the connector (the Deployment made,
// the rules resolved); events.k8s.io folds events of the same type, reason, action and
// objects into one series that keeps the first note, so it also keeps distinct events apart.
func (r *ExternalConnectorReconciler) event(ec *v1alpha1.ExternalConnector, related runtime.Object, eventType, reason, action, note string) {
	r.Recorder.Eventf(ec, related, eventType, reason, action, "%s", text.EventNote(note))
}

// SetupWithManager watches connectors, what they own, and the ConversationRules they use.
func (r *ExternalConnectorReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	ctx := context.Background()
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &v1alpha1.ExternalConnector{}, indexConnectorRules, func(o client.Object) []string {
		if name := o.(*v1alpha1.ExternalConnector).Spec.Rules; name != "" {
			return []string{name}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("index ExternalConnectors by rules: %w", err)
	}
	if err := idx.IndexField(ctx, &v1alpha1.ExternalConnector{}, indexConnectorGroup, func(o client.Object) []string {
		if g := o.(*v1alpha1.ExternalConnector).Spec.Group; g != "" {
			return []string{g}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("index ExternalConnectors by group: %w", err)
	}
	if err := idx.IndexField(ctx, &v1alpha1.ConversationRules{}, indexRulesGroup, func(o client.Object) []string {
		if g := o.(*v1alpha1.ConversationRules).Spec.Group; g != "" {
			return []string{g}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("index ConversationRules by group: %w", err)
	}

	// The connector's own status changes (ours and the engine's) must not bring a reconcile;
	// spec changes and the start of a deletion must.
	connectorChanged := predicate.Or(predicate.GenerationChangedPredicate{}, predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero()
		},
	})
	b := ctrl.NewControllerManagedBy(mgr)
	if l := r.Defaults.SharedMemory; l != nil {
		// A rotated password or CA goes to every connector's engine Secret.
		b = b.WatchesRawSource(source.Channel(l.changed, handler.TypedEnqueueRequestsFromMapFunc(r.allConnectors)))
	}
	return b.
		For(&v1alpha1.ExternalConnector{}, builder.WithPredicates(connectorChanged)).
		Owns(&appsv1.Deployment{}).
		Owns(&batchv1.Job{}).
		Owns(&corev1.Service{}).
		// Metadata only: the operator does not keep every Secret of the cluster in memory.
		Owns(&corev1.Secret{}, builder.OnlyMetadata).
		// Pods explain a workload that is not ready (unschedulable, an image not pulled).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(connectorOfPod)).
		Watches(&v1alpha1.ConversationRules{}, handler.EnqueueRequestsFromMapFunc(r.connectorsOf),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("externalconnector").
		Complete(r)
}

// podsOf lists the connector's pods (from the cache, which holds connector pods only), by
// name.
func (r *ExternalConnectorReconciler) podsOf(ctx context.Context, ec *v1alpha1.ExternalConnector) ([]corev1.Pod, error) {
	var list corev1.PodList
	if err := r.List(ctx, &list, client.InNamespace(ec.Namespace), client.MatchingLabels{v1alpha1.LabelConnector: ec.Name}); err != nil {
		return nil, fmt.Errorf("list the pods of ExternalConnector %s/%s: %w", ec.Namespace, ec.Name, err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items, nil
}

// connectorOfPod maps a connector pod to its connector.
func connectorOfPod(_ context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[v1alpha1.LabelConnector]
	if name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
}

// allConnectors lists every ExternalConnector the operator watches (from the cache).
func (r *ExternalConnectorReconciler) allConnectors(ctx context.Context, _ struct{}) []reconcile.Request {
	var list v1alpha1.ExternalConnectorList
	if err := r.List(ctx, &list); err != nil {
		// The settings are in place already: nothing would bring this change again.
		log.FromContext(ctx).Error(err, "list ExternalConnectors to hand them the shared-memory store's new settings; trying again", "in", rotationRetry)
		time.AfterFunc(rotationRetry, r.Defaults.SharedMemory.ask)
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, ec := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&ec)})
	}
	return reqs
}

// connectorsOf maps ConversationRules to the connectors of their namespace that name them or
// select their group (called with the old and the new object on updates, so a connector
// whose group loses the rules hears of it too).
func (r *ExternalConnectorReconciler) connectorsOf(ctx context.Context, o client.Object) []reconcile.Request {
	cr, ok := o.(*v1alpha1.ConversationRules)
	if !ok {
		return nil
	}
	var reqs []reconcile.Request
	add := func(field, value string) {
		var list v1alpha1.ExternalConnectorList
		if err := r.List(ctx, &list, client.InNamespace(cr.Namespace), client.MatchingFields{field: value}); err != nil {
			log.FromContext(ctx).Error(err, "list ExternalConnectors of ConversationRules", "rules", cr.Name)
			return
		}
		for _, ec := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&ec)})
		}
	}
	add(indexConnectorRules, cr.Name)
	if cr.Spec.Group != "" {
		add(indexConnectorGroup, cr.Spec.Group)
	}
	return reqs
}
