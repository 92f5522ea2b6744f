package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/text"
)

// previewLength bounds Activity input.preview, the INPUT column of kubectl get activities.
const previewLength = 48

// maxBatch bounds the activities of one batch.
const maxBatch = 4096

// maxObjectPayload bounds the bytes of an input or an output an Activity object keeps, in
// text and in base64. Connectors record up to maxInputSize (at most 1 MiB) of each: the text
// (up to twice the bytes with binary) and the base64 of both would pass what the API server
// takes in one object (1.5 MiB in etcd by default). A multiple of 3, so that base64 is cut
// by slicing.
const maxObjectPayload = 64<<10 - 1

// attach registers a stream with its connector and its process.
func (e *Engine) attach(s *stream) {
	e.metrics.streams.Inc()
	s.rs.mu.Lock()
	s.rs.current = s
	s.rs.mu.Unlock()
	s.cs.add(func(cs *connectorState) {
		cs.streams[s] = struct{}{}
		e.setConnectedPods(cs)
	})
}

// setConnectedPods counts the pods with a stream open; the caller holds cs.mu, so that the
// gauge follows the streams in order.
func (e *Engine) setConnectedPods(cs *connectorState) {
	e.metrics.connectedPods.WithLabelValues(cs.key.Namespace, cs.key.Name).Set(float64(len(podsOf(cs))))
}

// detach forgets a closed stream; its connections no longer count as active.
func (e *Engine) detach(s *stream) {
	e.metrics.streams.Dec()
	s.rs.mu.Lock()
	if s.rs.current == s {
		s.rs.current = nil
	}
	s.rs.mu.Unlock()
	s.cs.add(func(cs *connectorState) {
		delete(cs.streams, s)
		e.setConnectedPods(cs)
	})
	e.metrics.connections.WithLabelValues(s.connector.Namespace, s.connector.Name).Set(float64(s.cs.activeLocked()))
	if !s.bye.Load() && !e.stopping.Load() {
		if ec := e.cached(context.Background(), s.connector); ec != nil && ec.DeletionTimestamp == nil {
			e.event(ec, corev1.EventTypeWarning, v1alpha1.ReasonConnectorLost, "Disconnect",
				fmt.Sprintf("pod %s lost its stream to the engine; it reconnects and replays what was not acknowledged", s.pod))
		}
	}
}

func (cs *connectorState) activeLocked() int64 {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.active()
}

// heartbeat takes a process's counters; connection totals are added as deltas, so that
// process restarts and several pods add up.
func (e *Engine) heartbeat(s *stream, hb *enginev1.Heartbeat) {
	s.active.Store(hb.GetActiveConnections())
	s.shared.Store(hb.GetSharedMemory())
	s.rs.mu.Lock()
	prev := s.rs.heartbeat
	s.rs.heartbeat = hb
	s.rs.mu.Unlock()
	if prev == nil {
		prev = &enginev1.Heartbeat{}
	}
	dTotal := sub(hb.GetTotalConnections(), prev.GetTotalConnections())
	dRejected := sub(hb.GetRejectedConnections(), prev.GetRejectedConnections())
	dEvicted := sub(hb.GetEvictedConnections(), prev.GetEvictedConnections())
	dRateLimited := sub(hb.GetRateLimitedDatagrams(), prev.GetRateLimitedDatagrams())
	dDatagramsDropped := sub(hb.GetDroppedDatagrams(), prev.GetDroppedDatagrams())
	// Activities the process dropped before they could be sent (its buffers full, as when
	// the engine acknowledges slower than a flood arrives) were produced and are lost: they
	// count in total and dropped like those the engine drops.
	dDropped := sub(hb.GetActivitiesDropped(), prev.GetActivitiesDropped())
	s.cs.add(func(cs *connectorState) {
		cs.counts.connections += int64(dTotal)
		cs.counts.rejected += int64(dRejected)
		cs.counts.evicted += int64(dEvicted)
		cs.counts.rateLimited += int64(dRateLimited)
		cs.counts.datagramsDropped += int64(dDatagramsDropped)
		cs.counts.activities += int64(dDropped)
		cs.counts.dropped += int64(dDropped)
		cs.droppedSinceWarning += int64(dDropped)
	})
	if dDropped > 0 {
		e.metrics.dropped.WithLabelValues(s.connector.Namespace, s.connector.Name, "connector_buffer").Add(float64(dDropped))
	}
	e.metrics.connections.WithLabelValues(s.connector.Namespace, s.connector.Name).Set(float64(s.cs.activeLocked()))
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// receive takes in a batch: every activity is checked, counted and logged, and those the
// connector's record policy keeps are queued for writing. The batch is acknowledged once
// all of them are disposed of.
func (e *Engine) receive(s *stream, b *enginev1.ActivityBatch) error {
	n := len(b.GetActivities())
	if n > maxBatch {
		return status.Errorf(codes.InvalidArgument, "a batch carries at most %d activities, got %d", maxBatch, n)
	}
	if b.GetFirstSeq() == 0 {
		return status.Error(codes.InvalidArgument, "sequence numbers start at 1")
	}
	ec := e.cached(s.srv.Context(), s.connector)
	if ec == nil {
		return status.Errorf(codes.NotFound, "ExternalConnector %s is gone", s.connector)
	}
	policy := ec.Spec.Activities.Record
	acts := make([]incoming, n)
	size := 0
	for i, raw := range b.GetActivities() {
		size += len(raw)
		if err := acts[i].decode(raw, policy); err != nil {
			return status.Errorf(codes.InvalidArgument, "activity %d: %v", b.GetFirstSeq()+uint64(i), err)
		}
		rec := acts[i].rec
		switch rec.Connector {
		case "":
			rec.Connector = s.connector.Name
		case s.connector.Name:
		default:
			// The token binds the stream to one connector: never write for another.
			return status.Errorf(codes.PermissionDenied, "activity %d is for connector %q, but this stream is bound to %s",
				b.GetFirstSeq()+uint64(i), rec.Connector, s.connector)
		}
	}

	isNew, pb := s.rs.admit(b.GetFirstSeq(), n)
	if givenUp := s.rs.takeIn(pb, size); givenUp > 0 {
		e.metrics.sinkAckGivenUp.WithLabelValues(s.connector.Namespace, s.connector.Name).Add(float64(givenUp))
	}
	ns, name := s.connector.Namespace, s.connector.Name
	var fresh, inputs, fired, alerts, filtered int64
	var newest time.Time
	// The fresh activities and their names, for the ActivitySinks; replays (nil) were
	// offered when they first came.
	toSinks, names := make([]*incoming, n), make([]string, n)
	var signed []*v1alpha1.ActivityRecord // the fresh ones, in order, when checkpoints are signed
	for i := range acts {
		if !isNew(i) {
			continue
		}
		rec := acts[i].rec
		fresh++
		seq := b.GetFirstSeq() + uint64(i)
		toSinks[i], names[i] = &acts[i], ActivityName(ec.Name, s.run.run, seq)
		if e.signer != nil {
			signed = append(signed, rec)
		}
		e.activityLog.Info("activity", "namespace", ns, "seq", seq, "pod", s.pod, "activity", json.RawMessage(b.GetActivities()[i]))
		if rec.Type == v1alpha1.ActivityInput {
			inputs++
		}
		fired += int64(acts[i].fired)
		if rec.Alert {
			alerts++
			e.alert(s.cs, ec, s.pod, names[i], rec)
		}
		if t := rec.Time.Time; t.After(newest) {
			newest = t
		}
		e.lifecycle(ec, s.pod, rec)
		// A partial record is one of those keep leaves out (incoming.decode).
		if !keep(policy, rec) {
			filtered++
			continue
		}
		s.rs.hold(pb)
		act := activityObject(ec, names[i], rec)
		e.writer.enqueue(writeItem{act: act, done: func(r writeResult) { e.written(s.cs, s.rs, pb, r) }})
	}
	// After the writes are queued: the sinks share the records (read-only from here on).
	// Before the seal: the batch's acknowledgement waits for them too (sinkack.go).
	e.offer(ec, names, toSinks, s.rs, pb)
	s.rs.seal(pb, counts{activities: fresh})
	if e.signer != nil && len(signed) > 0 {
		cps := e.signer.Observe(signed)
		e.noteChain(signed[0], s.connector)
		e.logCheckpoints(ns, cps)
		e.offerCheckpoints(ec, cps)
	}

	e.metrics.received.WithLabelValues(ns, name).Add(float64(fresh))
	e.metrics.inputs.WithLabelValues(ns, name).Add(float64(inputs))
	e.metrics.rulesFired.WithLabelValues(ns, name).Add(float64(fired))
	e.metrics.alerts.WithLabelValues(ns, name).Add(float64(alerts))
	e.metrics.filtered.WithLabelValues(ns, name).Add(float64(filtered))
	s.cs.add(func(cs *connectorState) {
		if newest.After(cs.lastActivity) {
			cs.lastActivity = newest
		}
	})
	return nil
}

// keep applies spec.activities.record.
func keep(policy v1alpha1.RecordPolicy, rec *v1alpha1.ActivityRecord) bool {
	switch policy {
	case v1alpha1.RecordNone:
		return false
	case v1alpha1.RecordAlerts:
		return rec.Alert
	}
	return true
}

// written settles one write.
func (e *Engine) written(cs *connectorState, rs *runState, pb *pendingBatch, r writeResult) {
	ns, name := cs.key.Namespace, cs.key.Name
	// What the activity adds to the status, counted once its batch is acknowledged.
	var add counts
	switch r {
	case writeCreated:
		e.metrics.written.WithLabelValues(ns, name).Inc()
		add.recorded = 1
	case writeDuplicate:
		// A replay of an activity that another engine (a former leader) wrote and did not
		// acknowledge, so did not count: it is recorded, and counted here. (A replay to
		// this engine of what it took in already is skipped before it is queued.)
		add.recorded = 1
	case writeQueueFull, writeFailed:
		reason := "queue_full"
		if r == writeFailed {
			reason = "write_failed"
		}
		e.metrics.dropped.WithLabelValues(ns, name, reason).Inc()
		add.dropped = 1
		cs.add(func(cs *connectorState) { cs.droppedSinceWarning++ })
	case writeAbandoned:
		// The engine is stopping: leave the batch unacknowledged, so that it is replayed.
		return
	}
	rs.release(pb, add)
}

// activityObject is the Activity named name (ActivityName: it depends only on the connector
// process and the activity's sequence, so that a replay writes the same object) for rec.
func activityObject(ec *v1alpha1.ExternalConnector, name string, rec *v1alpha1.ActivityRecord) *v1alpha1.Activity {
	labels := map[string]string{v1alpha1.LabelConnector: ec.Name, v1alpha1.LabelType: string(rec.Type),
		v1alpha1.LabelAlert: strconv.FormatBool(rec.Alert)}
	if rec.Connection != nil && rec.Connection.ID != "" {
		labels[v1alpha1.LabelConnection] = rec.Connection.ID
	}
	act := &v1alpha1.Activity{
		ObjectMeta:     metav1.ObjectMeta{Name: name, Namespace: ec.Namespace, Labels: labels},
		ActivityRecord: *rec,
	}
	// Copies of input and output, cut to fit: rec goes whole to the JSON log and the sinks,
	// and is read by their goroutines.
	if rec.Input != nil {
		in := *rec.Input
		in.Preview = preview(in.Text)
		in.Text, in.Base64, in.Truncated = fitPayload(in.Text, in.Base64, in.Truncated)
		act.Input = &in
	}
	if rec.Output != nil {
		out := *rec.Output
		out.Text, out.Base64, out.Truncated = fitPayload(out.Text, out.Base64, out.Truncated)
		act.Output = &out
	}
	// Owned, an Activity goes with its connector; kept on delete, it outlives it and
	// expires by the operator's default ttl.
	if !ec.Spec.Activities.KeepOnDelete {
		act.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: v1alpha1.GroupVersion.String(), Kind: "ExternalConnector", Name: ec.Name, UID: ec.UID,
		}}
	}
	return act
}

// ActivityName is <connector>-<run>-<seq>, the seq zero-padded to six digits so that names
// sort in order for the first million activities of a process.
func ActivityName(connector, run string, seq uint64) string {
	s := strconv.FormatUint(seq, 10)
	if len(s) < 6 {
		s = strings.Repeat("0", 6-len(s)) + s
	}
	return connector + "-" + run + "-" + s
}

// fitPayload cuts the text and base64 of an input or output to maxObjectPayload bytes each
// (text on a character boundary), saying whether they are cut now.
func fitPayload(text, b64 string, truncated bool) (string, string, bool) {
	if len(text) > maxObjectPayload {
		cut := maxObjectPayload
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text, truncated = text[:cut], true
	}
	if n := maxObjectPayload / 3 * 4; len(b64) > n {
		b64, truncated = b64[:n], true
	}
	return text, b64, truncated
}

// preview is a short, escaped, one-line form of an input for the INPUT column.
func preview(input string) string {
	q := strconv.QuoteToGraphic(input)
	return text.Truncate(q[1:len(q)-1], previewLength)
}

// cached returns the connector from the cache, or nil when it is gone.
func (e *Engine) cached(ctx context.Context, key types.NamespacedName) *v1alpha1.ExternalConnector {
	var ec v1alpha1.ExternalConnector
	if err := e.client.Get(ctx, key, &ec); err != nil {
		return nil
	}
	return &ec
}
