package engine

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/statusapply"
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

// flushStatus patches the status of every connector whose counters changed, and says how
// many patches failed (they are retried at the next interval, and logged).
func (e *Engine) flushStatus(ctx context.Context) (failed int) {
	e.mu.Lock()
	states := make([]*connectorState, 0, len(e.connectors))
	for _, cs := range e.connectors {
		states = append(states, cs)
	}
	e.mu.Unlock()
	for _, cs := range states {
		e.suppressedAlerts(ctx, cs)
		if err := e.patchStatus(ctx, cs); err != nil {
			failed++
			e.metrics.statusPatches.WithLabelValues("error").Inc()
			e.log.Error(err, "update connector status", "connector", cs.key.String())
		}
	}
	e.flushSinks(ctx)
	return failed
}

// lastActivityTime is the status's lastActivityTime once an activity at last has been
// seen: later than stored, it replaces it. The API keeps whole seconds, so last is compared
// and stored truncated to the second; otherwise every heartbeat of an idle connector would
// carry a sub-second time "after" the stored one and cost a status write for nothing.
func lastActivityTime(stored *metav1.Time, last time.Time) *metav1.Time {
	last = last.Truncate(time.Second)
	if last.IsZero() || (stored != nil && !last.After(stored.Time)) {
		return stored
	}
	t := metav1.NewTime(last)
	return &t
}

// statusOwner is the field manager of the status fields the engine owns: the EngineConnected
// condition, connections, datagrams, activities and lastActivityTime. The connector controller owns
// the rest, under its own.
const statusOwner = client.FieldOwner("parley-engine")

// patchStatus applies one connector's engine-owned status fields if they changed; on an
// error the state stays dirty and the next interval tries again.
func (e *Engine) patchStatus(ctx context.Context, cs *connectorState) error {
	cs.mu.Lock()
	if !cs.dirty {
		cs.mu.Unlock()
		return nil
	}
	cs.dirty = false
	c, last, active, pods := cs.counts, cs.lastActivity, cs.active(), podsOf(cs)
	base, connected := cs.base, cs.connected
	stores, sharedBefore := storesOf(cs), cs.sharedReady
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
		// The counters continue from the status as the API server has it now, not from the
		// cache: a new leader's cache may not have the last status its predecessor wrote
		// before it stepped down.
		var live v1alpha1.ExternalConnector
		if err := e.apiReader.Get(ctx, cs.key, &live); err != nil {
			cs.markDirty()
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("read the status counters of %s: %w", cs.key, err)
		}
		b := countsOf(&live.Status)
		base = &b
		cs.mu.Lock()
		cs.base = base
		cs.mu.Unlock()
	}
	old := ec.DeepCopy()
	total := base.plus(c)
	st := &ec.Status
	st.Activities = v1alpha1.ActivityCounts{Total: total.activities, Recorded: total.recorded, Dropped: total.dropped}
	st.Connections = v1alpha1.ConnectionCounts{Active: active, Total: total.connections, Rejected: total.rejected, Evicted: total.evicted}
	st.Datagrams = nil // omitted while none were lost: TCP connectors never show it
	if total.rateLimited != 0 || total.datagramsDropped != 0 {
		st.Datagrams = &v1alpha1.DatagramCounts{RateLimited: total.rateLimited, Dropped: total.datagramsDropped}
	}
	st.LastActivityTime = lastActivityTime(st.LastActivityTime, last)
	restoreCondition(&st.Conditions, connected)
	meta.SetStatusCondition(&st.Conditions, engineConnected(ec.Generation, pods))
	restoreCondition(&st.Conditions, sharedBefore)
	// No pod reporting a store (none connected) leaves the condition as it was.
	if len(stores) > 0 {
		meta.SetStatusCondition(&st.Conditions, sharedMemoryReady(ec.Generation, stores))
	}

	if equality.Semantic.DeepEqual(old.Status, ec.Status) {
		return nil
	}
	fields, err := ownedStatus(st)
	if err == nil {
		err = statusapply.Apply(ctx, e.client, &ec, statusOwner, fields)
	}
	if err != nil {
		cs.markDirty()
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("apply status of %s: %w", cs.key, err)
	}
	e.metrics.statusPatches.WithLabelValues("ok").Inc()
	cs.remember(&cs.connected, ec.Status.Conditions, v1alpha1.ConditionEngineConnected)
	if c := cs.remember(&cs.sharedReady, ec.Status.Conditions, v1alpha1.ConditionSharedMemoryReady); c != nil {
		e.announceSharedMemory(&ec, sharedBefore, c)
	}
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
// each said Bye after flushing its activities, or went away. A new leader does not take the
// absence of streams for that while its pods may still be redialing: within ReconnectGrace
// of its start, a connector whose status says pods are connected is not done.
func (e *Engine) End(_ context.Context, ec *v1alpha1.ExternalConnector) (bool, error) {
	streams := 0
	if cs := e.lookup(client.ObjectKeyFromObject(ec)); cs != nil {
		cs.mu.Lock()
		for s := range cs.streams {
			s.signalKick()
		}
		streams = len(cs.streams)
		cs.mu.Unlock()
	}
	if streams > 0 {
		return false, nil
	}
	if e.inReconnectGrace() && meta.IsStatusConditionTrue(ec.Status.Conditions, v1alpha1.ConditionEngineConnected) {
		return false, nil
	}
	return true, nil
}

// inReconnectGrace says whether connector pods may still be on their way to this engine:
// it does not serve yet, or began less than ReconnectGrace ago.
func (e *Engine) inReconnectGrace() bool {
	if e.opts.ReconnectGrace < 0 {
		return false
	}
	since := e.leadingSince.Load()
	if since == nil {
		return true
	}
	select {
	case <-e.ready:
	default:
		return true
	}
	return time.Since(*since) < e.opts.ReconnectGrace
}

// forgetAbsentPods has, once ReconnectGrace has passed since this engine began serving, the
// EngineConnected condition of every connector that claims connected pods judged by this
// engine's streams: a new leader inherits the condition from its predecessor, and pods that
// did not dial it within the grace are gone (the status loop writes False for them).
func (e *Engine) forgetAbsentPods(ctx context.Context) {
	t := time.NewTimer(e.opts.ReconnectGrace)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	var list v1alpha1.ExternalConnectorList
	if err := e.client.List(ctx, &list); err != nil {
		e.log.Error(err, "list connectors to check which are still connected")
		return
	}
	for i := range list.Items {
		if ec := &list.Items[i]; meta.IsStatusConditionTrue(ec.Status.Conditions, v1alpha1.ConditionEngineConnected) {
			e.connector(client.ObjectKeyFromObject(ec)).markDirty()
		}
	}
}

// engineConnected is the EngineConnected condition of a connector with these pods connected.
func engineConnected(generation int64, pods []string) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionEngineConnected, ObservedGeneration: generation}
	if len(pods) > 0 {
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonEngineConnected
		c.Message = fmt.Sprintf("%d pod(s) connected to the engine: %s", len(pods), strings.Join(pods, ", "))
	} else {
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonEngineDisconnected
		c.Message = "no connector pod is connected to the engine"
	}
	return c
}

// ownedStatus is every status field the engine owns, whole: the counters are applied even at
// zero, so that a status that never had them gets them all.
func ownedStatus(st *v1alpha1.ExternalConnectorStatus) (statusapply.Fields, error) {
	conditions, err := statusapply.Conditions(st.Conditions, v1alpha1.ConditionEngineConnected, v1alpha1.ConditionSharedMemoryReady)
	if err != nil {
		return nil, err
	}
	f := statusapply.Fields{"conditions": conditions}
	if f["connections"], err = statusapply.Object(&st.Connections); err != nil {
		return nil, err
	}
	if f["activities"], err = statusapply.Object(&st.Activities); err != nil {
		return nil, err
	}
	// Set once a datagram was lost; the counts only grow, so it is never taken back.
	if st.Datagrams != nil {
		if f["datagrams"], err = statusapply.Object(st.Datagrams); err != nil {
			return nil, err
		}
	}
	if st.LastActivityTime != nil {
		f["lastActivityTime"] = st.LastActivityTime.ToUnstructured()
	}
	return f, nil
}

// podStore is what one pod said of its shared-memory store.
type podStore struct {
	pod    string
	report *enginev1.SharedMemory
}

// storesOf lists, by pod, the stores the connector's connected pods report; the caller
// holds cs.mu.
func storesOf(cs *connectorState) []podStore {
	var out []podStore
	for s := range cs.streams {
		if r := s.shared.Load(); r.GetState() != enginev1.SharedMemory_STATE_UNSPECIFIED {
			out = append(out, podStore{pod: s.pod, report: r})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pod < out[j].pod })
	return out
}

// sharedMemoryReady is the SharedMemoryReady condition of a connector whose pods report
// these stores: False as soon as one pod lost its store, with the pods and the last error.
func sharedMemoryReady(generation int64, stores []podStore) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionSharedMemoryReady, ObservedGeneration: generation,
		Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSharedMemoryReady}
	var lost, ready []string
	lastError := ""
	for _, s := range stores {
		if s.report.GetState() == enginev1.SharedMemory_LOST {
			lost = append(lost, s.pod)
			if lastError == "" {
				lastError = s.report.GetLastError()
			}
		} else {
			ready = append(ready, s.pod)
		}
	}
	store := stores[0].report.GetStore()
	if len(lost) > 0 {
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonSharedMemoryLost
		c.Message = fmt.Sprintf("%d pod(s) cannot reach the shared-memory store %s: %s; last error: %s",
			len(lost), store, strings.Join(lost, ", "), lastError)
		return c
	}
	c.Message = fmt.Sprintf("%d pod(s) reach the shared-memory store %s: %s", len(ready), store, strings.Join(ready, ", "))
	return c
}

// announceSharedMemory sends a Warning Event when the store is lost (from ready, or at
// first report) and a Normal one when it recovers.
func (e *Engine) announceSharedMemory(ec *v1alpha1.ExternalConnector, before, now *metav1.Condition) {
	switch {
	case now.Status == metav1.ConditionFalse && (before == nil || before.Status == metav1.ConditionTrue):
		e.event(ec, corev1.EventTypeWarning, v1alpha1.ReasonSharedMemoryLost, "SharedMemory", now.Message+
			". Shared steps are Error activities until it is back; check the store and the chart's sharedMemory values")
	case now.Status == metav1.ConditionTrue && before != nil && before.Status == metav1.ConditionFalse:
		e.event(ec, corev1.EventTypeNormal, v1alpha1.ReasonSharedMemoryRecovered, "SharedMemory", now.Message)
	}
}

// restoreCondition puts back the condition last applied (saved), which the cache may not
// have yet: the next one then keeps its lastTransitionTime while its status stays.
func restoreCondition(conds *[]metav1.Condition, saved *metav1.Condition) {
	if saved == nil {
		return
	}
	meta.RemoveStatusCondition(conds, saved.Type)
	*conds = append(*conds, *saved)
}

// remember saves, under the connector's lock, a copy of the condition typ as just applied
// into *slot, for restoreCondition; it returns the applied condition, nil if absent.
func (cs *connectorState) remember(slot **metav1.Condition, conds []metav1.Condition, typ string) *metav1.Condition {
	c := meta.FindStatusCondition(conds, typ)
	if c == nil {
		return nil
	}
	applied := *c
	cs.mu.Lock()
	*slot = &applied
	cs.mu.Unlock()
	return c
}
