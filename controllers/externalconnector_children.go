package controllers

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// observed is what runs for a connector.
type observed struct {
	deployment *appsv1.Deployment
	job        *batchv1.Job
	// pods are the connector's pods, by name, to explain a workload that is not ready.
	pods []corev1.Pod
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
// the other mode, and returns what runs, and whether the Secret waits for the engine's CA.
// Unresolved rules leave the workload as it is.
func (r *ExternalConnectorReconciler) workload(ctx context.Context, ec *v1alpha1.ExternalConnector, res resolution) (observed, bool, error) {
	t := res.target
	mode := ec.Status.Mode
	if t != nil {
		mode = t.mode
	}
	if msg := nameProblem(ec.Name, mode); msg != "" {
		o, err := r.observe(ctx, ec)
		o.invalid = msg
		return o, false, err
	}
	caPending, err := r.ensureSecret(ctx, ec)
	if err != nil {
		return observed{}, false, err
	}
	w, err := r.children(ctx, ec, t)
	return w, caPending, err
}

// children makes the workload of the target's mode and removes the other mode's; without a
// target (unresolved rules) they are left as they are.
func (r *ExternalConnectorReconciler) children(ctx context.Context, ec *v1alpha1.ExternalConnector, t *target) (observed, error) {
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
