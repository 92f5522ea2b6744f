package sink_test

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/evidence"
	"github.com/parley-dev/parley/sink"
)

// receiver is a real HTTP server that checks each body's signature and keeps the activities
// by key; down makes it answer 503.
type receiver struct {
	t        *testing.T
	key      []byte
	mu       sync.Mutex
	keys     map[string]int // deliveries per key
	down     bool
	refused  chan struct{} // one value per refused request, when set
	hold     chan struct{} // when set, requests wait for it to close
	entered  chan struct{} // one value per request, before it waits for hold
	received chan struct{} // one value per accepted request
	srv      *httptest.Server
}

func newReceiver(t *testing.T, key []byte) *receiver {
	r := &receiver{t: t, key: key, keys: map[string]int{}, received: make(chan struct{}, 10000), refused: make(chan struct{}, 10000),
		entered: make(chan struct{}, 10000)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.entered <- struct{}{}
	if r.hold != nil {
		<-r.hold
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if want := sink.Sign(r.key, body); !hmac.Equal([]byte(req.Header.Get(sink.SignatureHeader)), []byte(want)) {
		r.t.Errorf("signature %q, want %q", req.Header.Get(sink.SignatureHeader), want)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	r.mu.Lock()
	down := r.down
	r.mu.Unlock()
	if down {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		r.refused <- struct{}{}
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
	}
	r.mu.Lock()
	for _, a := range batch.Activities {
		if a.Type != v1alpha1.ActivityInput || a.Input == nil {
			r.t.Errorf("activity %+v", a.ActivityRecord)
		}
		r.keys[a.Metadata.Name]++
	}
	r.mu.Unlock()
	r.received <- struct{}{}
}

func (r *receiver) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

func (r *receiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.keys)
}

func items(prefix string, n int) []sink.Item {
	out := make([]sink.Item, n)
	for i := range out {
		out[i] = sink.Item{Key: fmt.Sprintf("%s-%06d", prefix, i+1), Record: &v1alpha1.ActivityRecord{
			Connector: "redis", Type: v1alpha1.ActivityInput, Input: &v1alpha1.InputRecord{Text: "PING\r\n", Bytes: 6}}}
	}
	return out
}

var quick = sink.Options{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}

func start(t *testing.T, dest sink.Destination, o sink.Options) *sink.Sink {
	s := sink.New(dest, o)
	go s.Run()
	t.Cleanup(func() { s.Close() })
	return s
}

// settle waits until every one of the n activities offered was delivered or dropped.
func settle(t *testing.T, s *sink.Sink, n uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Drain(ctx, n); err != nil {
		t.Fatalf("%v: %+v", err, s.Stats())
	}
}

func TestWebhookDeliversSignedBatches(t *testing.T) {
	key := []byte("s3cret")
	r := newReceiver(t, key)
	s := start(t, sink.NewWebhook(r.srv.URL, v1alpha1.WebhookJSON, key, nil), quick)
	s.Offer(items("a", 1200)...)
	settle(t, s, 1200)
	if st := s.Stats(); st.Delivered != 1200 || st.Dropped != 0 || st.Failed != 0 || r.distinct() != 1200 {
		t.Fatalf("stats %+v, %d distinct keys received", st, r.distinct())
	}
}

// A receiver down, then back: everything queued meanwhile arrives, each key at least once.
func TestWebhookReceiverDownThenBack(t *testing.T) {
	key := []byte("k")
	r := newReceiver(t, key)
	r.setDown(true)
	s := sink.New(sink.NewWebhook(r.srv.URL, v1alpha1.WebhookJSON, key, nil), sink.Options{QueueLength: 100, MaxBatch: 10,
		MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	s.Offer(items("a", 100)...) // exactly the queue's bound
	go s.Run()
	defer s.Close()
	for range 3 { // refused three times: the sink retries
		<-r.refused
	}
	r.setDown(false)
	settle(t, s, 100)
	st := s.Stats()
	if st.Delivered != 100 || st.Dropped != 0 || st.Failed < 3 || r.distinct() != 100 || !strings.Contains(st.LastError, "503") {
		t.Fatalf("stats %+v, %d distinct keys", st, r.distinct())
	}
}

// Down past the bound: what does not fit is dropped, counted exactly, and Offer never waits.
func TestWebhookDownPastTheBound(t *testing.T) {
	key := []byte("k")
	r := newReceiver(t, key)
	r.setDown(true)
	var announced uint64
	o := sink.Options{QueueLength: 50, MaxBatch: 10, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond,
		OnDrop: func(n uint64) { announced += n }}
	s := sink.New(sink.NewWebhook(r.srv.URL, v1alpha1.WebhookJSON, key, nil), o)
	s.Offer(items("a", 80)...) // 50 fit, 30 dropped
	go s.Run()
	defer s.Close()
	<-r.refused                // the first batch (10) is out of the queue, being retried
	s.Offer(items("b", 25)...) // 10 fit again, 15 dropped
	if st := s.Stats(); st.Dropped != 45 || announced != 45 {
		t.Fatalf("dropped %d (announced %d), want 45", st.Dropped, announced)
	}
	r.setDown(false)
	settle(t, s, 105)
	if st := s.Stats(); st.Delivered != 60 || r.distinct() != 60 {
		t.Fatalf("stats %+v, %d keys", st, r.distinct())
	}
}

// A receiver that does not answer holds its own sink only.
func TestSlowReceiverDoesNotSlowAnother(t *testing.T) {
	key := []byte("k")
	slow, fast := newReceiver(t, key), newReceiver(t, key)
	slow.hold = make(chan struct{})
	defer close(slow.hold)
	ss := sink.New(sink.NewWebhook(slow.srv.URL, v1alpha1.WebhookJSON, key, nil), sink.Options{QueueLength: 100, MaxBatch: 10})
	fs := sink.New(sink.NewWebhook(fast.srv.URL, v1alpha1.WebhookJSON, key, nil), sink.Options{QueueLength: 1000, MaxBatch: 10})
	ss.Offer(items("a", 100)...)
	fs.Offer(items("a", 100)...)
	for _, s := range []*sink.Sink{ss, fs} {
		go s.Run()
		t.Cleanup(func() { s.Close() })
	}
	<-slow.entered               // the slow sink's first batch of 10 is out of its queue, and stuck
	ss.Offer(items("b", 100)...) // never waits, though nothing leaves this sink: 10 fit
	fs.Offer(items("b", 100)...)
	settle(t, fs, 200)
	if st := fs.Stats(); st.Delivered != 200 || fast.distinct() != 200 {
		t.Fatalf("fast sink %+v", st)
	}
	if st := ss.Stats(); st.Delivered != 0 || st.Dropped != 90 {
		t.Fatalf("slow sink %+v", st)
	}
}

func TestSlackMessage(t *testing.T) {
	body, err := sink.SlackMessage([]sink.Item{{Key: "k", Record: &v1alpha1.ActivityRecord{
		Connector: "redis-decoy", Type: v1alpha1.ActivityInput, Alert: true,
		Connection: &v1alpha1.ConnectionRef{Peer: "203.0.113.9:51122"},
		Rules:      &v1alpha1.RulesRecord{Executed: []int32{3}},
		Input:      &v1alpha1.InputRecord{Text: "AUTH <admin> hunter2\r\n"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"text":":rotating_light: ALERT *redis-decoy* Input from 203.0.113.9:51122 (rules 3) input \"AUTH \u0026lt;admin\u0026gt; hunter2\\r\\n\""}`
	if string(body) != want {
		t.Fatalf("got  %s\nwant %s", body, want)
	}
}

// Closed, a sink leaves over what it did not deliver, in order: the batch it was delivering
// and what was queued, none counted delivered or dropped. The engine hands them to the sink
// it builds in its place.
func TestLeftoverIsWhatWasNotDelivered(t *testing.T) {
	key := []byte("k")
	r := newReceiver(t, key)
	r.hold = make(chan struct{})
	defer close(r.hold)
	s := sink.New(sink.NewWebhook(r.srv.URL, v1alpha1.WebhookJSON, key, nil), sink.Options{MaxBatch: 2})
	offered := items("a", 5)
	s.Offer(offered...)
	go s.Run()
	<-r.entered // the first batch of 2 is out of the queue, in flight
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	left := s.Leftover()
	var keys []string
	for _, it := range left {
		keys = append(keys, it.Key)
	}
	if strings.Join(keys, " ") != "a-000001 a-000002 a-000003 a-000004 a-000005" {
		t.Errorf("left over %v", keys)
	}
	if st := s.Stats(); st.Delivered != 0 || st.Dropped != 0 || st.Queued != 0 {
		t.Errorf("stats %+v", st)
	}
}

// Each item is settled once: when its receiver accepted it (not before: a refused attempt
// settles nothing) or when Offer dropped it; never what the sink still held when it closed,
// whose Settle goes with it in Leftover.
func TestItemsAreSettledOnceDeliveredOrDropped(t *testing.T) {
	key := []byte("k")
	r := newReceiver(t, key)
	r.setDown(true)
	var mu sync.Mutex
	settled := map[string]int{}
	withSettle := func(its []sink.Item) []sink.Item {
		for i := range its {
			k := its[i].Key
			its[i].Settle = func() { mu.Lock(); settled[k]++; mu.Unlock() }
		}
		return its
	}
	count := func(prefix string) (n, twice int) {
		mu.Lock()
		defer mu.Unlock()
		for k, c := range settled {
			if strings.HasPrefix(k, prefix) {
				n++
				if c > 1 {
					twice++
				}
			}
		}
		return n, twice
	}
	s := sink.New(sink.NewWebhook(r.srv.URL, v1alpha1.WebhookJSON, key, nil),
		sink.Options{QueueLength: 10, MaxBatch: 5, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	s.Offer(withSettle(items("a", 15))...) // 10 fit, 5 dropped and settled at once
	if n, _ := count("a-"); n != 5 {
		t.Fatalf("%d settled after the offer, want the 5 dropped", n)
	}
	go s.Run()
	<-r.refused
	<-r.refused // refused attempts settle nothing
	if n, _ := count("a-"); n != 5 {
		t.Fatalf("%d settled while the receiver refuses, want 5", n)
	}
	r.setDown(false)
	settle(t, s, 15)
	if n, twice := count("a-"); n != 15 || twice != 0 {
		t.Fatalf("%d settled (%d twice), want 15 once each", n, twice)
	}

	// Closed while the receiver refuses: nothing of b is settled, and Leftover keeps Settle.
	r.setDown(true)
	s.Offer(withSettle(items("b", 4))...)
	<-r.refused
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	left := s.Leftover()
	if n, _ := count("b-"); n != 0 || len(left) != 4 {
		t.Fatalf("%d of b settled, %d left over; want 0 and 4", n, len(left))
	}
	for _, it := range left {
		it.Settle()
	}
	if n, twice := count("b-"); n != 4 || twice != 0 {
		t.Fatalf("left over Settle: %d settled (%d twice)", n, twice)
	}
}

// An activity carried as its connector's JSON (Raw) goes out as it came, and reads the same
// as one encoded from the whole record: the JSON webhook's body, and what Slack and CEF
// show of a partial record (decoded from Raw).
func TestRawActivitiesReadAsEncodedOnes(t *testing.T) {
	whole := items("redis-7f3a9c", 3)
	whole[1].Record.Alert = true
	whole[2].Record.Message = `a "quoted" <message>`
	raw := make([]sink.Item, len(whole))
	for i, it := range whole {
		b, err := json.Marshal(it.Record)
		if err != nil {
			t.Fatal(err)
		}
		head := &v1alpha1.ActivityRecord{Connector: it.Record.Connector, Type: it.Record.Type, Alert: it.Record.Alert}
		raw[i] = sink.Item{Key: it.Key, Record: head, Raw: b, Partial: true}
	}
	decode := func(items []sink.Item) any {
		body, err := sink.JSONBatch(items)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		return v
	}
	got, want := decode(raw), decode(whole)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("raw body  %v\nwhole body %v", got, want)
	}
	// An empty object adds nothing but its name.
	empty := decode([]sink.Item{{Key: "empty", Record: &v1alpha1.ActivityRecord{}, Raw: []byte(`{}`), Partial: true}})
	if fmt.Sprint(empty) != "map[activities:[map[metadata:map[name:empty]]]]" {
		t.Errorf("empty: %v", empty)
	}
	slackRaw, _ := sink.SlackMessage(raw[:3])
	slackWhole, _ := sink.SlackMessage(whole[:3])
	if string(slackRaw) != string(slackWhole) || !strings.Contains(string(slackRaw), "PING") {
		t.Errorf("Slack from raw %s\nfrom whole %s", slackRaw, slackWhole)
	}
	if c := sink.CEF(raw[2]); c != sink.CEF(whole[2]) || !strings.Contains(c, "quoted") {
		t.Errorf("CEF from raw %s\nfrom whole %s", c, sink.CEF(whole[2]))
	}
}

// A sink cuts what waits into batches of at most MaxBatch items, in order: a JSON webhook
// gets every activity and checkpoint once, whether the activities travel encoded or as
// their connector's JSON (Raw), however the items fall across the batches.
func TestWebhookBatchesAreCutAtMaxBatch(t *testing.T) {
	const maxBatch, n = 7, 100
	var (
		mu     sync.Mutex
		bodies [][]string // the keys of each body, activities and checkpoints in order
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body struct {
			Activities []struct {
				Metadata struct{ Name string } `json:"metadata"`
				v1alpha1.ActivityRecord
			} `json:"activities"`
			Checkpoints []struct {
				Metadata   struct{ Name string } `json:"metadata"`
				Checkpoint *evidence.Checkpoint  `json:"checkpoint"`
			} `json:"checkpoints"`
		}
		if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
			t.Errorf("body: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var keys []string
		for _, a := range body.Activities {
			if a.Input == nil || a.Input.Text != "PING\r\n" {
				t.Errorf("activity %s: %+v", a.Metadata.Name, a.ActivityRecord)
			}
			keys = append(keys, a.Metadata.Name)
		}
		for _, c := range body.Checkpoints {
			if c.Checkpoint == nil || sink.CheckpointItem("redis", c.Checkpoint).Key != c.Metadata.Name {
				t.Errorf("checkpoint %s: %+v", c.Metadata.Name, c.Checkpoint)
			}
			keys = append(keys, c.Metadata.Name)
		}
		mu.Lock()
		bodies = append(bodies, keys)
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)

	// In the first half, every third activity as its connector's JSON (a batch with one
	// such goes out as rawJSONBatch, else as JSONBatch); a checkpoint after every tenth.
	var offered []sink.Item
	for i, it := range items("redis-7f3a9c", n) {
		if i < n/2 && i%3 == 1 {
			raw, err := json.Marshal(it.Record)
			if err != nil {
				t.Fatal(err)
			}
			it.Raw = raw
		}
		offered = append(offered, it)
		if i%10 == 9 {
			offered = append(offered, sink.CheckpointItem("redis", &evidence.Checkpoint{
				Chain: "c", Seq: uint64(i + 1), Hash: "h", Time: "2026-01-02T03:04:05Z", Key: "k", Signature: "s"}))
		}
	}
	s := sink.New(sink.NewWebhook(srv.URL, v1alpha1.WebhookJSON, nil, nil), sink.Options{MaxBatch: maxBatch})
	s.Offer(offered...) // all queued before the sink runs: it cuts them, it does not wait for more
	go s.Run()
	t.Cleanup(func() { s.Close() })
	settle(t, s, uint64(len(offered)))

	mu.Lock()
	defer mu.Unlock()
	// Within a body, activities come before checkpoints: compare each batch as a set, in
	// the order of the activities, then of the checkpoints.
	next := 0
	for i, keys := range bodies {
		if len(keys) > maxBatch || (len(keys) < maxBatch && next+len(keys) != len(offered)) {
			t.Errorf("body %d carries %d items (max %d), %d of %d before it", i, len(keys), maxBatch, next, len(offered))
		}
		var want, wantCps []string
		for _, it := range offered[next:min(next+len(keys), len(offered))] {
			if it.Checkpoint != nil {
				wantCps = append(wantCps, it.Key)
			} else {
				want = append(want, it.Key)
			}
		}
		if got, want := strings.Join(keys, " "), strings.Join(append(want, wantCps...), " "); got != want {
			t.Fatalf("body %d: %s\nwant %s", i, got, want)
		}
		next += len(keys)
	}
	if next != len(offered) || len(bodies) != (len(offered)+maxBatch-1)/maxBatch {
		t.Errorf("%d items in %d bodies, want %d in %d", next, len(bodies), len(offered), (len(offered)+maxBatch-1)/maxBatch)
	}
	if st := s.Stats(); st.Delivered != n || st.Checkpoints != n/10 || st.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
}
