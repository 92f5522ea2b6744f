package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// LabelEngineLeader marks the operator pod whose engine serves: only the leader does, and
// the engine Service selects this label, so connector pods reach the leader alone
// (docs/operator.md, "High availability").
const LabelEngineLeader = "parley.io/engine-leader"

// leaderPod sets and clears LabelEngineLeader on the operator's own pod.
type leaderPod struct {
	client client.Client
	key    types.NamespacedName
}

// mark sets the label (leader true) or removes it. A JSON merge patch of the one label: it
// never conflicts with other writers of the pod, and removing an absent label changes nothing.
func (p *leaderPod) mark(ctx context.Context, leader bool) error {
	var value any // null removes the label
	if leader {
		value = "true"
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{LabelEngineLeader: value}}})
	if err != nil {
		return err
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.key.Namespace, Name: p.key.Name}}
	if err := p.client.Patch(ctx, pod, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("label operator pod %s %s=%v: %w", p.key, LabelEngineLeader, leader, err)
	}
	return nil
}

// unmarkStale removes a label left by an earlier process of this pod (a container restart
// keeps the pod and its labels): it runs before the manager starts, so before this process
// could be elected, and the engine Service never sends connector pods to a replica that
// does not serve. Transient errors are retried as client-go retries conflicts.
func (p *leaderPod) unmarkStale(ctx context.Context) error {
	return retry.OnError(retry.DefaultBackoff, func(err error) bool {
		return !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err)
	}, func() error { return p.mark(ctx, false) })
}

// markUntilDone sets the label, retrying with capped backoff until it is set or ctx ends:
// while the label is missing the engine serves but connector pods cannot reach it, so
// giving up is not an option.
func (p *leaderPod) markUntilDone(ctx context.Context, log func(error)) {
	backoff := wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 10 * time.Second}
	_ = wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
		if err := p.mark(ctx, true); err != nil {
			log(err)
			return false, nil
		}
		return true, nil
	})
}
