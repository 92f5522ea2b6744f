package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// dropWarningEvery rate-limits the ActivitiesDropped event per connector.
const dropWarningEvery = 5 * time.Minute

// statusLoop writes changed counters to connectors' status every StatusInterval: one patch
// per connector and interval however many activities arrived.
func (e *Engine) statusLoop(ctx context.Context) {
	t := time.NewTicker(e.opts.StatusInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.flushStatus(ctx)
		}
	}
}

// flushStatus patches the status of every connector whose counters changed.
func (e *Engine) flushStatus(ctx context.Context) {
	e.mu.Lock()
	states := make([]*connectorState, 0, len(e.connectors))
	for _, cs := range e.connectors {
		states = append(states, cs)
	}
	e.mu.Unlock()
	for _, cs := range states {
		if err := e.patchStatus(ctx, cs); err != nil {
			if apierrors.IsConflict(err) {
				e.metrics.statusPatches.WithLabelValues("conflict").Inc()
			} else {
				e.metrics.statusPatches.WithLabelValues("error").Inc()
				e.log.Error(err, "update connector status", "connector", cs.key.String())
			}
		}
	}
}

// patchStatus writes one connector's engine-owned status fields if they changed. The
// optimistic lock keeps the reconciler's fields: on a conflict the state stays dirty and
// the next interval tries again on a fresher cache.
func (e *Engine) patchStatus(ctx context.Context, cs *connectorState) error {
	cs.mu.Lock()
	if !cs.dirty {
		cs.mu.Unlock()
		return nil
	}
	cs.dirty = false
	c, last, active, pods := cs.counts, cs.lastActivity, cs.active(), podsOf(cs)
	base := cs.base
	dropped := cs.droppedSinceWarning
	cs.mu.Unlock()

	var ec v1alpha1.ExternalConnector
	if err := e.client.Get(ctx, cs.key, &ec); err != nil {
		if apierrors.IsNotFound(err) {
			e.forgetConnector(cs)
			return nil
		}
		cs.markDirty()
		return err
	}
	if base == nil {
		b := countsOf(&ec.Status)
		base = &b
		cs.mu.Lock()
		cs.base = base
		cs.mu.Unlock()
	}
	old := ec.DeepCopy()
	total := base.plus(c)
	st := &ec.Status
	st.Activities = v1alpha1.ActivityCounts{Total: total.activities, Recorded: total.recorded, Dropped: total.dropped}
	st.Connections = v1alpha1.ConnectionCounts{Active: active, Total: total.connections, Rejected: total.rejected}
	if !last.IsZero() && (st.LastActivityTime == nil || last.After(st.LastActivityTime.Time)) {
		t := metav1.NewTime(last)
		st.LastActivityTime = &t
	}
	connected := metav1.Condition{Type: v1alpha1.ConditionEngineConnected, ObservedGeneration: ec.Generation}
	if len(pods) > 0 {
		connected.Status, connected.Reason = metav1.ConditionTrue, v1alpha1.ReasonEngineConnected
		connected.Message = fmt.Sprintf("%d pod(s) connected to the engine: %s", len(pods), strings.Join(pods, ", "))
	} else {
		connected.Status, connected.Reason = metav1.ConditionFalse, v1alpha1.ReasonEngineDisconnected
		connected.Message = "no connector pod is connected to the engine"
	}
	meta.SetStatusCondition(&st.Conditions, connected)

	if equality.Semantic.DeepEqual(old.Status, ec.Status) {
		return nil
	}
	if err := e.client.Status().Patch(ctx, &ec, statusPatch(&ec)); err != nil {
		cs.markDirty()
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("patch status of %s: %w", cs.key, err)
	}
	e.metrics.statusPatches.WithLabelValues("ok").Inc()
	if dropped > 0 {
		e.warnDropped(cs, &ec, dropped)
	}
	return nil
}

// warnDropped announces dropped activities with one Warning Event per connector every
// dropWarningEvery; status and metrics have the exact counts.
func (e *Engine) warnDropped(cs *connectorState, ec *v1alpha1.ExternalConnector, dropped int64) {
	cs.mu.Lock()
	if time.Since(cs.lastDropWarning) < dropWarningEvery {
		cs.mu.Unlock()
		return
	}
	cs.lastDropWarning = time.Now()
	cs.droppedSinceWarning -= dropped
	cs.mu.Unlock()
	e.event(ec, corev1.EventTypeWarning, v1alpha1.ReasonActivitiesDropped, "Write", fmt.Sprintf(
		"%d activities could not be written as Activity objects: more arrive than the engine's write rate (--activity-qps, --activity-burst) and queue allow. "+
			"They are counted in status.activities.dropped and logged; record only alerts (spec.activities.record: Alerts) or raise the rate", dropped))
}

func (cs *connectorState) markDirty() {
	cs.mu.Lock()
	cs.dirty = true
	cs.mu.Unlock()
}

// podsOf lists the pods with an open stream, sorted; the caller holds cs.mu.
func podsOf(cs *connectorState) []string {
	seen := map[string]bool{}
	var pods []string
	for s := range cs.streams {
		if !seen[s.pod] {
			seen[s.pod] = true
			pods = append(pods, s.pod)
		}
	}
	sort.Strings(pods)
	return pods
}

// forgetConnector drops the state of a deleted connector with no streams left.
func (e *Engine) forgetConnector(cs *connectorState) {
	cs.mu.Lock()
	streams := len(cs.streams)
	cs.mu.Unlock()
	if streams > 0 {
		return
	}
	e.mu.Lock()
	if e.connectors[cs.key] == cs {
		delete(e.connectors, cs.key)
	}
	for k := range e.runs {
		if k.connector == cs.key {
			delete(e.runs, k)
		}
	}
	e.mu.Unlock()
	e.metrics.forget(cs.key.Namespace, cs.key.Name)
}

// disconnectAll orders every stream to dial again: the engine is stopping.
func (e *Engine) disconnectAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, cs := range e.connectors {
		cs.mu.Lock()
		for s := range cs.streams {
			signal(s.disconnect)
		}
		cs.mu.Unlock()
	}
}

// End implements controllers.Ender: it orders the deleted connector's pods to end (their
// streams see the deletion and send End) and reports done once none of them is connected:
// each said Bye after flushing its activities, or went away.
func (e *Engine) End(_ context.Context, ec *v1alpha1.ExternalConnector) (bool, error) {
	cs := e.lookup(client.ObjectKeyFromObject(ec))
	if cs == nil {
		return true, nil
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for s := range cs.streams {
		s.signalKick()
	}
	return len(cs.streams) == 0, nil
}

// statusPatch is a merge patch of the engine's status fields, whole: a patch of only the
// counters that changed would leave the others unset on an object whose status never had
// them. The resourceVersion makes it fail on a conflict rather than overwrite the
// reconciler's newer conditions.
func statusPatch(ec *v1alpha1.ExternalConnector) client.Patch {
	type status struct {
		Conditions       []metav1.Condition        `json:"conditions"`
		Connections      v1alpha1.ConnectionCounts `json:"connections"`
		Activities       v1alpha1.ActivityCounts   `json:"activities"`
		LastActivityTime *metav1.Time              `json:"lastActivityTime,omitempty"`
	}
	body := struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Status status `json:"status"`
	}{}
	body.Metadata.ResourceVersion = ec.ResourceVersion
	st := ec.Status
	body.Status = status{st.Conditions, st.Connections, st.Activities, st.LastActivityTime}
	raw, err := json.Marshal(body)
	if err != nil {
		// Plain data: Marshal cannot fail on it.
		panic(err)
	}
	return client.RawPatch(types.MergePatchType, raw)
}
