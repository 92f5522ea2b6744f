package engine_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/engine"
	"github.com/parley-dev/parley/sink"
)

// hookReceiver is a real HTTP server receiving a JSON webhook: it checks each body's
// HMAC-SHA256 signature with the key of the moment and keeps the activities by name.
type hookReceiver struct {
	t        *testing.T
	mu       sync.Mutex
	key      []byte
	got      map[string]v1alpha1.ActivityRecord
	requests int
	// deliveries counts each name's deliveries: more than one is a redelivery.
	deliveries map[string]int
	// down makes it answer 503.
	down bool
	// hold, when set, keeps every request waiting until it is closed (release).
	hold        chan struct{}
	releaseOnce sync.Once
	// bodies are the accepted bodies, in order.
	bodies [][]byte
	srv    *httptest.Server
}

func newHookReceiver(t *testing.T, key string) *hookReceiver {
	r := &hookReceiver{t: t, key: []byte(key), got: map[string]v1alpha1.ActivityRecord{}, deliveries: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(func() {
		r.release()
		r.srv.Close()
	})
	return r
}

// release lets the held requests, and every later one, through.
func (r *hookReceiver) release() {
	if r.hold != nil {
		r.releaseOnce.Do(func() { close(r.hold) })
	}
}

func (r *hookReceiver) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	if r.hold != nil {
		select {
		case <-r.hold:
		case <-req.Context().Done():
			return
		}
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if r.down {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	if want := sink.Sign(r.key, body); !hmac.Equal([]byte(req.Header.Get(sink.SignatureHeader)), []byte(want)) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var batch struct {
		Activities []struct {
			Metadata struct{ Name string } `json:"metadata"`
			v1alpha1.ActivityRecord
		} `json:"activities"`
	}
	if err := json.Unmarshal(body, &batch); err != nil {
		r.t.Errorf("body %s: %v", body, err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, a := range batch.Activities {
		if prev, ok := r.got[a.Metadata.Name]; ok && !sameEvidence(prev.Evidence, a.Evidence) {
			// At least once means duplicates under one key, of one activity.
			r.t.Errorf("%s delivered again as another activity: %+v, then %+v", a.Metadata.Name, prev.Evidence, a.Evidence)
		}
		r.got[a.Metadata.Name] = a.ActivityRecord
		r.deliveries[a.Metadata.Name]++
	}
	r.bodies = append(r.bodies, body)
}

// output is the accepted bodies, one after the other, as a receiver would store them.
func (r *hookReceiver) output() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Join(r.bodies, []byte("\n"))
}

func sameEvidence(a, b *v1alpha1.EvidenceRecord) bool {
	return a != nil && b != nil && *a == *b
}

// redelivered counts the deliveries of names delivered before.
func (r *hookReceiver) redelivered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.deliveries {
		n += c - 1
	}
	return n
}

func (r *hookReceiver) setKey(key string) {
	r.mu.Lock()
	r.key = []byte(key)
	r.mu.Unlock()
}

// names are the names of the activities received, sorted.
func (r *hookReceiver) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for n := range r.got {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (r *hookReceiver) record(name string) (v1alpha1.ActivityRecord, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.got[name]
	return a, ok
}

func createSecret(t *testing.T, ns, name string, data map[string]string) *corev1.Secret {
	t.Helper()
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}
	if err := k8s.Create(context.Background(), sec); err != nil {
		t.Fatal(err)
	}
	return sec
}

// createHookSink makes an ActivitySink posting to url, signed with the Secret hook's key.
func createHookSink(t *testing.T, ns, name, url string, selector *metav1.LabelSelector, filter v1alpha1.SinkFilter) {
	t.Helper()
	as := &v1alpha1.ActivitySink{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1alpha1.ActivitySinkSpec{
		ConnectorSelector: selector, Filter: filter,
		Webhook: &v1alpha1.WebhookSink{URL: url, SecretRef: &v1alpha1.SecretKeyRef{Name: "hook"}},
	}}
	if err := k8s.Create(context.Background(), as); err != nil {
		t.Fatal(err)
	}
}

func getSink(t *testing.T, ns, name string) *v1alpha1.ActivitySink {
	t.Helper()
	var as v1alpha1.ActivitySink
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &as); err != nil {
		t.Fatal(err)
	}
	return &as
}

// statusFieldsOf are the status fields each manager owns, as the API server records them.
func statusFieldsOf(as *v1alpha1.ActivitySink) map[string]string {
	owned := map[string]string{}
	for _, mf := range as.ManagedFields {
		if mf.Subresource == "status" && mf.FieldsV1 != nil {
			owned[mf.Manager] = mf.FieldsV1.GetRawString()
		}
	}
	return owned
}

// waitDelivering waits until an engine has built the sink: it then writes the counters.
func waitDelivering(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, "the engine delivers to ActivitySink "+name, func() error {
		if owned := statusFieldsOf(getSink(t, ns, name)); !strings.Contains(owned["parley-engine"], `"f:delivered"`) {
			return fmt.Errorf("status fields %v", owned)
		}
		return nil
	})
}

// sinkMetric is the engine metric name of ns/sink in reg.
func sinkMetric(t *testing.T, reg *prometheus.Registry, name, ns, sinkName string) (float64, bool) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == ns && labels["sink"] == sinkName {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// The engine delivers each activity of a connector the sink's selector picks, signed and
// keyed by its Activity's name, counts it in the sink's status under its own field manager
// beside the controller's, and exports it; a sink whose selector does not pick the
// connector gets nothing, and one whose filter keeps only alerts gets only those.
func TestActivitySinkDeliversTheConnectorsItSelects(t *testing.T) {
	f := newFixture(t, func(ec *v1alpha1.ExternalConnector) { ec.Labels = map[string]string{"team": "blue"} })
	createSecret(t, f.ns, "hook", map[string]string{sink.KeyHMAC: "s3cret"})
	blue, alerts, red := newHookReceiver(t, "s3cret"), newHookReceiver(t, "s3cret"), newHookReceiver(t, "s3cret")
	createHookSink(t, f.ns, "blue", blue.srv.URL, &metav1.LabelSelector{MatchLabels: map[string]string{"team": "blue"}}, v1alpha1.SinkFilter{})
	createHookSink(t, f.ns, "alerts", alerts.srv.URL, nil, v1alpha1.SinkFilter{AlertsOnly: true})
	createHookSink(t, f.ns, "red", red.srv.URL, &metav1.LabelSelector{MatchLabels: map[string]string{"team": "red"}}, v1alpha1.SinkFilter{})
	for _, name := range []string{"blue", "alerts", "red"} {
		waitDelivering(t, f.ns, name)
	}

	f.start(t)
	p := f.dial(t)
	p.expect("+OK ready\r\n")
	p.say("PING\r\n", "+PONG v1\r\n")
	p.say("AUTH admin hunter2\r\n", "+OK\r\n")
	p.say("QUIT\r\n", "+OK bye\r\n")

	var objects []string
	eventually(t, "every Activity delivered to the blue sink by name", func() error {
		objects = objects[:0]
		inputs := 0
		for _, a := range f.activities(t) {
			objects = append(objects, a.Name)
			if a.Type == v1alpha1.ActivityInput {
				inputs++
			}
		}
		sort.Strings(objects)
		if got := blue.names(); inputs < 3 || strings.Join(got, " ") != strings.Join(objects, " ") {
			return fmt.Errorf("%d inputs; objects %v, delivered %v", inputs, objects, got)
		}
		return nil
	})
	for _, name := range objects {
		var obj v1alpha1.Activity
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: f.ns, Name: name}, &obj); err != nil {
			t.Fatal(err)
		}
		got, _ := blue.record(name)
		if got.Type != obj.Type || got.Evidence == nil || obj.Evidence == nil || got.Evidence.Hash != obj.Evidence.Hash {
			t.Errorf("%s delivered as %s %+v, the object is %s %+v", name, got.Type, got.Evidence, obj.Type, obj.Evidence)
		}
	}
	eventually(t, "the alert delivered to the alerts sink", func() error {
		got := alerts.names()
		if len(got) != 1 {
			return fmt.Errorf("delivered %v", got)
		}
		if a, _ := alerts.record(got[0]); !a.Alert || a.Input == nil || a.Input.Text != "AUTH admin hunter2\r\n" {
			return fmt.Errorf("delivered %+v", a)
		}
		return nil
	})

	eventually(t, "the blue sink's status counts what it delivered", func() error {
		st := getSink(t, f.ns, "blue").Status
		if st.Delivered != int64(len(blue.names())) || st.Failed != 0 || st.Dropped != 0 || st.LastError != "" {
			return fmt.Errorf("status %+v, %d delivered", st, len(blue.names()))
		}
		return nil
	})
	if v, _ := sinkMetric(t, mainMetrics, "parley_engine_sink_delivered_total", f.ns, "blue"); v != float64(len(blue.names())) {
		t.Errorf("parley_engine_sink_delivered_total %v, want %d", v, len(blue.names()))
	}
	// red was offered nothing: what it had been offered would be queued or delivered.
	for _, m := range []string{"parley_engine_sink_delivered_total", "parley_engine_sink_queue_length", "parley_engine_sink_dropped_total"} {
		if v, ok := sinkMetric(t, mainMetrics, m, f.ns, "red"); !ok || v != 0 {
			t.Errorf("red: %s %v (exported %v), want 0", m, v, ok)
		}
	}
	if got := red.names(); len(got) != 0 {
		t.Errorf("the red sink got %v", got)
	}

	// Who owns what: the engine the counters, the controller the rest.
	owned := statusFieldsOf(getSink(t, f.ns, "blue"))
	for manager, fields := range map[string][]string{
		"parley-engine":                  {`"f:delivered"`, `"f:failed"`, `"f:dropped"`},
		"parley-activitysink-controller": {`"f:type"`, `"f:observedGeneration"`, `k:{\"type\":\"Ready\"}`},
	} {
		for _, fld := range fields {
			if !strings.Contains(owned[manager], fld) {
				t.Errorf("%s does not own %s: %s", manager, fld, owned[manager])
			}
		}
	}
	for _, fld := range []string{`"f:delivered"`, `"f:dropped"`} {
		if strings.Contains(owned["parley-activitysink-controller"], fld) {
			t.Errorf("the controller owns the engine's %s", fld)
		}
	}
	for _, fld := range []string{`"f:conditions"`, `"f:type"`} {
		if strings.Contains(owned["parley-engine"], fld) {
			t.Errorf("the engine owns the controller's %s", fld)
		}
	}
}

// A changed Secret rebuilds the sink: what comes next is signed with the new key. A deleted
// sink stops: the engine forgets it, and the other sinks go on.
func TestActivitySinkFollowsItsSecretAndItsDeletion(t *testing.T) {
	f := newFixture(t, nil)
	sec := createSecret(t, f.ns, "hook", map[string]string{sink.KeyHMAC: "old"})
	recv, other := newHookReceiver(t, "old"), newHookReceiver(t, "old")
	createHookSink(t, f.ns, "siem", recv.srv.URL, nil, v1alpha1.SinkFilter{Types: []v1alpha1.ActivityType{v1alpha1.ActivityInput}})
	createHookSink(t, f.ns, "other", other.srv.URL, nil, v1alpha1.SinkFilter{Types: []v1alpha1.ActivityType{v1alpha1.ActivityInput}})
	waitDelivering(t, f.ns, "siem")
	waitDelivering(t, f.ns, "other")
	f.start(t)
	p := f.dial(t)
	p.expect("+OK ready\r\n")
	p.say("PING\r\n", "+PONG v1\r\n")
	eventually(t, "the first input delivered", func() error {
		if n := len(recv.names()); n != 1 {
			return fmt.Errorf("%d delivered", n)
		}
		return nil
	})

	recv.setKey("new")
	other.setKey("new")
	sec.StringData = map[string]string{sink.KeyHMAC: "new"}
	if err := k8s.Update(context.Background(), sec); err != nil {
		t.Fatal(err)
	}
	// The engine rebuilds on its own schedule: inputs signed with the old key are refused
	// (and retried, with the new key once it is rebuilt), so each arrives in the end.
	p.say("PING\r\n", "+PONG v1\r\n")
	eventually(t, "the second input delivered, signed with the new key", func() error {
		if n := len(recv.names()); n != 2 {
			return fmt.Errorf("%d delivered", n)
		}
		return nil
	})

	if err := k8s.Delete(context.Background(), &v1alpha1.ActivitySink{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "siem"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the engine forgets the deleted sink", func() error {
		if _, ok := sinkMetric(t, mainMetrics, "parley_engine_sink_delivered_total", f.ns, "siem"); ok {
			return fmt.Errorf("still exported")
		}
		return nil
	})
	p.say("PING\r\n", "+PONG v1\r\n")
	eventually(t, "the third input delivered to the other sink", func() error {
		if n := len(other.names()); n != 3 {
			return fmt.Errorf("%d delivered", n)
		}
		return nil
	})
	if n := len(recv.names()); n != 2 {
		t.Errorf("the deleted sink got %d inputs, want 2", n)
	}
}

// A receiver that never answers fills its sink's queue: what does not fit is dropped and
// counted exactly (status and metrics), announced by one Warning on the ActivitySink, and
// the Activities are written all the same.
func TestActivitySinkDropsAreCountedAndAnnounced(t *testing.T) {
	f := newFixture(t, nil)
	creds := secretFiles(t, f.ns, f.name)
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	reg := prometheus.NewRegistry()
	e, err := startOperator(ctx, engine.Options{ActivityQPS: 500, ActivityBurst: 500, Registry: reg,
		SinkOptions: sink.Options{QueueLength: 2, MaxBatch: 1}}, false)
	if err != nil {
		t.Fatal(err)
	}
	createSecret(t, f.ns, "hook", map[string]string{sink.KeyHMAC: "k"})
	stuck := newHookReceiver(t, "k")
	stuck.hold = make(chan struct{})
	createHookSink(t, f.ns, "stuck", stuck.srv.URL, nil, v1alpha1.SinkFilter{})
	// Two engines share the API server here (the suite's and this one); both write the
	// counters. Only this one has the connector, so wait for its sink in its metrics.
	eventually(t, "this engine built the sink", func() error {
		if _, ok := sinkMetric(t, reg, "parley_engine_sink_queue_length", f.ns, "stuck"); !ok {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	f.waitServing(t, startConnector(t, f.ns, f.name, e.Address(), creds))
	p := f.dial(t)
	p.expect("+OK ready\r\n")
	for range 10 {
		p.say("PING\r\n", "+PONG v1\r\n")
	}
	var total int
	eventually(t, "ten inputs written", func() error {
		total = len(f.activities(t))
		inputs := 0
		for _, a := range f.activities(t) {
			if a.Type == v1alpha1.ActivityInput {
				inputs++
			}
		}
		if inputs != 10 {
			return fmt.Errorf("%d inputs", inputs)
		}
		return nil
	})
	// One batch held by the receiver, two queued: the rest of what was offered is dropped.
	eventually(t, "drops counted", func() error {
		queued, _ := sinkMetric(t, reg, "parley_engine_sink_queue_length", f.ns, "stuck")
		dropped, _ := sinkMetric(t, reg, "parley_engine_sink_dropped_total", f.ns, "stuck")
		if queued != 2 || dropped < float64(total-3) {
			return fmt.Errorf("queued %v, dropped %v of %d", queued, dropped, total)
		}
		return nil
	})
	dropped, _ := sinkMetric(t, reg, "parley_engine_sink_dropped_total", f.ns, "stuck")
	eventually(t, "status.dropped", func() error {
		if st := getSink(t, f.ns, "stuck").Status; st.Dropped != int64(dropped) || st.Delivered != 0 {
			return fmt.Errorf("status %+v, want dropped %v", st, dropped)
		}
		return nil
	})
	var warnings []eventsv1.Event
	eventually(t, "one ActivitiesDropped Warning on the sink", func() error {
		var list eventsv1.EventList
		if err := k8s.List(context.Background(), &list, client.InNamespace(f.ns)); err != nil {
			return err
		}
		warnings = warnings[:0]
		for _, ev := range list.Items {
			if ev.Regarding.Kind == "ActivitySink" && ev.Regarding.Name == "stuck" && ev.Reason == v1alpha1.ReasonSinkDropping {
				warnings = append(warnings, ev)
			}
		}
		if len(warnings) != 1 {
			return fmt.Errorf("%d warnings", len(warnings))
		}
		return nil
	})
	if w := warnings[0]; w.Type != corev1.EventTypeWarning || !strings.Contains(w.Note, "activities dropped") {
		t.Errorf("warning %s %q", w.Type, w.Note)
	}

	// The acknowledgement waits for the sink: with the first activity held by the receiver,
	// nothing is acknowledged (a status counts activities once acknowledged).
	if st := f.connector(t).Status.Activities; st.Total != 0 {
		t.Errorf("status.activities.total %d while the sink holds the first activity, want 0", st.Total)
	}
	// Released, the three held are delivered; the dropped ones were settled when dropped,
	// so every batch is acknowledged.
	stuck.release()
	eventually(t, "every activity acknowledged", func() error {
		written := len(f.activities(t))
		if st := f.connector(t).Status.Activities; st.Total != int64(written) {
			return fmt.Errorf("status.activities %+v, want total %d", st, written)
		}
		if got := len(stuck.names()); got < 3 {
			return fmt.Errorf("%d delivered, want the 3 held", got)
		}
		return nil
	})
}
