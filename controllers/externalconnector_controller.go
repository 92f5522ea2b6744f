package controllers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
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

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/text"
)

// fieldOwner is the server-side apply field manager of everything the controller applies.
const fieldOwner = client.FieldOwner("parley-externalconnector")

// endPoll is how often a graceful end is checked while it is not done.
const endPoll = time.Second

// conflictRetry is how soon a status write refused for a stale read is tried again.
const conflictRetry = 100 * time.Millisecond

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
	// APIReader reads Secrets straight from the API server, so that the operator does not
	// cache every Secret of the cluster.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Defaults  Defaults
	// Ender ends deleted connectors gracefully; nil ends them at once.
	Ender Ender
}

// +kubebuilder:rbac:groups=parley.io,resources=externalconnectors,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=parley.io,resources=externalconnectors/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=parley.io,resources=externalconnectors/finalizers,verbs=update
// +kubebuilder:rbac:groups=parley.io,resources=conversationrules,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile resolves the connector's rules, keeps its workload in shape and reports status.
func (r *ExternalConnectorReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var ec v1alpha1.ExternalConnector
	if err := r.Get(ctx, req.NamespacedName, &ec); err != nil {
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
	w, werr := r.workload(ctx, &ec, res)
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
	r.setStatus(&ec, res, w, werr)
	if err := r.patchStatus(ctx, old, &ec); err != nil {
		if apierrors.IsConflict(err) && werr == nil {
			// The cache is behind a status write (ours, or the engine's), which brings no
			// event of its own: try again on fresher data, without logging an error.
			return ctrl.Result{RequeueAfter: conflictRetry}, nil
		}
		return ctrl.Result{}, err
	}
	r.announce(ctx, old, &ec, res, w)
	return ctrl.Result{}, werr
}

// observed is what runs for a connector.
type observed struct {
	deployment *appsv1.Deployment
	job        *batchv1.Job
	// invalid says why no workload can be made for the connector (a bad name).
	invalid string
}

func (o observed) running() client.Object {
	switch {
	case o.deployment != nil:
		return o.deployment
	case o.job != nil:
		return o.job
	}
	return nil
}

// workload makes the connector's Secret and the workload of its mode, removes the workload of
// the other mode, and returns what runs. Unresolved rules leave the workload as it is.
func (r *ExternalConnectorReconciler) workload(ctx context.Context, ec *v1alpha1.ExternalConnector, res resolution) (observed, error) {
	t := res.target
	mode := ec.Status.Mode
	if t != nil {
		mode = t.mode
	}
	if msg := nameProblem(ec.Name, mode); msg != "" {
		o, err := r.observe(ctx, ec)
		o.invalid = msg
		return o, err
	}
	if err := r.ensureSecret(ctx, ec); err != nil {
		return observed{}, err
	}
	if t == nil {
		return r.observe(ctx, ec)
	}
	switch t.mode {
	case v1alpha1.ModeClient:
		why := "the rules are in Client mode now"
		if err := r.deleteOwned(ctx, ec, &appsv1.Deployment{}, "Deployment", why); err != nil {
			return observed{}, err
		}
		if err := r.deleteOwned(ctx, ec, &corev1.Service{}, "Service", why); err != nil {
			return observed{}, err
		}
		job, err := r.ensureJob(ctx, ec, *t)
		return observed{job: job}, err
	default:
		if err := r.deleteOwned(ctx, ec, &batchv1.Job{}, "Job", "the rules are in Server mode now"); err != nil {
			return observed{}, err
		}
		dep, err := r.applyDeployment(ctx, ec, *t)
		if err != nil {
			return observed{deployment: dep}, err
		}
		return observed{deployment: dep}, r.applyService(ctx, ec, *t)
	}
}

// nameProblem says why objects named after the connector cannot exist: the pod label value
// and Job names take at most 63 characters, Service names must start with a letter.
func nameProblem(name string, mode v1alpha1.Mode) string {
	errs := validation.IsDNS1123Label(name)
	if mode != v1alpha1.ModeClient {
		errs = validation.IsDNS1035Label(name)
	}
	if len(errs) == 0 {
		return ""
	}
	return fmt.Sprintf("the connector's name %q cannot name its workload and pods: %s; use a shorter name starting with a letter", name, errs[0])
}

// observe finds the workloads the connector controls, without changing anything.
func (r *ExternalConnectorReconciler) observe(ctx context.Context, ec *v1alpha1.ExternalConnector) (observed, error) {
	var o observed
	key := client.ObjectKey{Namespace: ec.Namespace, Name: ec.Name}
	var dep appsv1.Deployment
	if err := r.Get(ctx, key, &dep); err == nil && isControlledBy(&dep, ec) {
		o.deployment = &dep
	} else if err != nil && !apierrors.IsNotFound(err) {
		return o, err
	}
	var job batchv1.Job
	if err := r.Get(ctx, key, &job); err == nil && isControlledBy(&job, ec) {
		o.job = &job
	} else if err != nil && !apierrors.IsNotFound(err) {
		return o, err
	}
	return o, nil
}

func isControlledBy(obj metav1.Object, ec *v1alpha1.ExternalConnector) bool {
	ref := metav1.GetControllerOf(obj)
	return ref != nil && ref.UID == ec.UID
}

// checkController refuses to take over an object another controller owns; objects without a
// controller (orphans of an earlier connector of the same name) are adopted.
func checkController(ec *v1alpha1.ExternalConnector, obj metav1.Object, kind string) error {
	ref := metav1.GetControllerOf(obj)
	if ref == nil || ref.UID == ec.UID {
		return nil
	}
	return fmt.Errorf("%s %s/%s exists and is controlled by %s %s, not by this connector: not touching it",
		kind, obj.GetNamespace(), obj.GetName(), ref.Kind, ref.Name)
}

// getLive reads an object from the cache and, when the cache does not have it yet, from the
// API server, so that an object made a moment ago is not made (or announced) twice.
func (r *ExternalConnectorReconciler) getLive(ctx context.Context, key client.ObjectKey, obj client.Object) (bool, error) {
	err := r.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) {
		err = r.APIReader.Get(ctx, key, obj)
	}
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// ensureSecret makes the connector's engine Secret with a random token, once: an existing
// token is never replaced, and other keys (the engine CA) are left alone.
func (r *ExternalConnectorReconciler) ensureSecret(ctx context.Context, ec *v1alpha1.ExternalConnector) error {
	name := v1alpha1.EngineSecretName(ec.Name)
	var s corev1.Secret
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ec.Namespace, Name: name}, &s)
	if apierrors.IsNotFound(err) {
		token, err := newToken()
		if err != nil {
			return err
		}
		s = corev1.Secret{
			ObjectMeta: objectMeta(ec, name),
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{v1alpha1.TokenKey: token},
		}
		if ca := r.engineCA(); len(ca) > 0 {
			s.Data[v1alpha1.EngineCAKey] = ca
		}
		if err := r.Create(ctx, &s); err != nil {
			return fmt.Errorf("create Secret %s: %w", name, err)
		}
		r.event(ec, &s, corev1.EventTypeNormal, v1alpha1.ReasonCreated, "Create", fmt.Sprintf("created Secret %s with the connector's engine token", name))
		return nil
	}
	if err != nil {
		return fmt.Errorf("get Secret %s: %w", name, err)
	}
	if err := checkController(ec, &s, "Secret"); err != nil {
		return err
	}
	patch := client.MergeFrom(s.DeepCopy())
	changed := false
	if !isControlledBy(&s, ec) {
		s.OwnerReferences = append(s.OwnerReferences, controllerRef(ec))
		changed = true
	}
	for k, v := range v1alpha1.ConnectorLabels(ec.Name) {
		if s.Labels[k] != v {
			if s.Labels == nil {
				s.Labels = map[string]string{}
			}
			s.Labels[k], changed = v, true
		}
	}
	if len(s.Data[v1alpha1.TokenKey]) == 0 {
		token, err := newToken()
		if err != nil {
			return err
		}
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		s.Data[v1alpha1.TokenKey], changed = token, true
		r.event(ec, &s, corev1.EventTypeNormal, v1alpha1.ReasonCreated, "Update", fmt.Sprintf("Secret %s had no token: generated one", name))
	}
	// The CA follows the engine's: a connector must trust the engine it dials.
	if ca := r.engineCA(); len(ca) > 0 && !bytes.Equal(s.Data[v1alpha1.EngineCAKey], ca) {
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		s.Data[v1alpha1.EngineCAKey], changed = ca, true
	}
	if !changed {
		return nil
	}
	if err := r.Patch(ctx, &s, patch); err != nil {
		return fmt.Errorf("patch Secret %s: %w", name, err)
	}
	return nil
}

func (r *ExternalConnectorReconciler) engineCA() []byte {
	if r.Defaults.EngineCA == nil {
		return nil
	}
	return r.Defaults.EngineCA()
}

// newToken is 32 random bytes, hex encoded.
func newToken() ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("generate an engine token: %w", err)
	}
	return []byte(hex.EncodeToString(b)), nil
}

// applyDeployment server-side applies the Deployment of a server-mode connector; fields other
// managers set (a rollout restart's annotation, say) are left alone.
func (r *ExternalConnectorReconciler) applyDeployment(ctx context.Context, ec *v1alpha1.ExternalConnector, t target) (*appsv1.Deployment, error) {
	want := deploymentFor(ec, t, r.Defaults)
	ac := &appsv1ac.DeploymentApplyConfiguration{}
	if err := convert(want, ac); err != nil {
		return nil, err
	}
	ac.Status = nil
	var live, got appsv1.Deployment
	created, err := r.apply(ctx, ec, "Deployment", want, &live, ac, &got)
	if err != nil {
		return nil, err
	}
	if created {
		r.event(ec, &got, corev1.EventTypeNormal, v1alpha1.ReasonCreated, "Create", fmt.Sprintf("created Deployment %s: %s %s port %d, %d replica(s)",
			got.Name, t.mode, t.transport, t.port, replicas(ec)))
	}
	if created || live.Generation != got.Generation {
		r.warnLowPortOnHost(ec, t)
	}
	return &got, nil
}

// applyService server-side applies the Service in front of a server-mode connector.
func (r *ExternalConnectorReconciler) applyService(ctx context.Context, ec *v1alpha1.ExternalConnector, t target) error {
	want := serviceFor(ec, t)
	ac := &corev1ac.ServiceApplyConfiguration{}
	if err := convert(want, ac); err != nil {
		return err
	}
	ac.Status = nil
	var live, got corev1.Service
	created, err := r.apply(ctx, ec, "Service", want, &live, ac, &got)
	if err != nil {
		return err
	}
	if created {
		r.event(ec, &got, corev1.EventTypeNormal, v1alpha1.ReasonCreated, "Create", fmt.Sprintf("created Service %s: %s, %s port %d",
			got.Name, got.Spec.Type, t.protocol(), t.port))
	}
	return nil
}

// apply server-side applies ac (the apply configuration of want), reading what was there into
// live and the result into got; it reports whether the object is new.
func (r *ExternalConnectorReconciler) apply(ctx context.Context, ec *v1alpha1.ExternalConnector, kind string,
	want, live client.Object, ac runtime.ApplyConfiguration, got client.Object) (bool, error) {
	key := client.ObjectKeyFromObject(want)
	found, err := r.getLive(ctx, key, live)
	if err != nil {
		return false, fmt.Errorf("get %s %s: %w", kind, key.Name, err)
	}
	if found {
		if err := checkController(ec, live, kind); err != nil {
			return false, err
		}
	}
	if err := r.Apply(ctx, ac, fieldOwner, client.ForceOwnership); err != nil {
		return false, fmt.Errorf("apply %s %s: %w", kind, key.Name, err)
	}
	if err := convert(ac, got); err != nil {
		return false, fmt.Errorf("read back %s %s: %w", kind, key.Name, err)
	}
	return !found, nil
}

// ensureJob makes the Job of a client-mode connector. Jobs are immutable: a Job made from
// another spec is replaced while it runs, or after it finished when the connector itself was
// edited since (a finished Job is not rerun because the operator changed).
func (r *ExternalConnectorReconciler) ensureJob(ctx context.Context, ec *v1alpha1.ExternalConnector, t target) (*batchv1.Job, error) {
	want := jobFor(ec, t, r.Defaults)
	var live batchv1.Job
	found, err := r.getLive(ctx, client.ObjectKeyFromObject(want), &live)
	if err != nil {
		return nil, fmt.Errorf("get Job %s: %w", want.Name, err)
	}
	if !found {
		if err := r.Create(ctx, want, fieldOwner); err != nil {
			return nil, fmt.Errorf("create Job %s: %w", want.Name, err)
		}
		r.event(ec, want, corev1.EventTypeNormal, v1alpha1.ReasonCreated, "Create", fmt.Sprintf("created Job %s: %s %s to %s",
			want.Name, t.mode, t.transport, t.endpoint(ec)))
		r.warnLowPortOnHost(ec, t)
		return want, nil
	}
	if err := checkController(ec, &live, "Job"); err != nil {
		return nil, err
	}
	if live.Annotations[v1alpha1.AnnotationTemplateHash] == want.Annotations[v1alpha1.AnnotationTemplateHash] {
		return &live, nil
	}
	_, finished := jobFinished(&live)
	if finished && live.Annotations[v1alpha1.AnnotationConnectorGeneration] == want.Annotations[v1alpha1.AnnotationConnectorGeneration] {
		return &live, nil
	}
	if err := r.Delete(ctx, &live, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("delete Job %s to replace it: %w", live.Name, err)
	}
	r.event(ec, &live, corev1.EventTypeNormal, v1alpha1.ReasonReplaced, "Delete", fmt.Sprintf("deleted Job %s made from an older spec; a new one follows", live.Name))
	// The deletion event brings the next reconcile, which makes the new Job.
	return nil, nil
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

// deleteOwned deletes the object named after the connector if the connector controls it.
func (r *ExternalConnectorReconciler) deleteOwned(ctx context.Context, ec *v1alpha1.ExternalConnector, obj client.Object, kind, why string) error {
	if err := r.Get(ctx, client.ObjectKey{Namespace: ec.Namespace, Name: ec.Name}, obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !isControlledBy(obj, ec) {
		return nil
	}
	if err := r.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("delete %s %s: %w", kind, obj.GetName(), err)
	}
	r.event(ec, obj, corev1.EventTypeNormal, v1alpha1.ReasonDeleted, "Delete", fmt.Sprintf("deleted %s %s: %s", kind, obj.GetName(), why))
	return nil
}

func (r *ExternalConnectorReconciler) warnLowPortOnHost(ec *v1alpha1.ExternalConnector, t target) {
	if t.mode == v1alpha1.ModeServer && t.port < 1024 && ec.Spec.Pod.HostNetwork {
		r.event(ec, nil, corev1.EventTypeWarning, v1alpha1.ReasonLowPortOnHost, "Apply", fmt.Sprintf(
			"port %d is below 1024 on the host network, where %s is the node's own setting: the operator does not set it, so the non-root connector can bind the port only if the node allows it",
			t.port, v1alpha1.UnprivilegedSysctl))
	}
}

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

// end runs the graceful end of a deleted connector: phase Terminating, the Ender until it is
// done or the grace period after the deletion has passed, then the finalizer goes and owner
// references take the children with the connector.
func (r *ExternalConnectorReconciler) end(ctx context.Context, ec *v1alpha1.ExternalConnector) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(ec, v1alpha1.FinalizerGracefulEnd) {
		return ctrl.Result{}, nil
	}
	grace := gracePeriod(ec)
	old := ec.DeepCopy()
	ec.Status.Phase = v1alpha1.PhaseTerminating
	meta.SetStatusCondition(&ec.Status.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonTerminating, ObservedGeneration: ec.Generation,
		Message: fmt.Sprintf("ending: live conversations get their ending and activities are flushed, for at most %s", grace),
	})
	if err := r.patchStatus(ctx, old, ec); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{RequeueAfter: conflictRetry}, nil
		}
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
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ExternalConnector{}, builder.WithPredicates(connectorChanged)).
		Owns(&appsv1.Deployment{}).
		Owns(&batchv1.Job{}).
		Owns(&corev1.Service{}).
		// Metadata only: the operator does not keep every Secret of the cluster in memory.
		Owns(&corev1.Secret{}, builder.OnlyMetadata).
		Watches(&v1alpha1.ConversationRules{}, handler.EnqueueRequestsFromMapFunc(r.connectorsOf),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("externalconnector").
		Complete(r)
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
