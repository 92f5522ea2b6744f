package activity_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/activity"
)

// blockingSink holds every write until released, like a stalled terminal or engine.
type blockingSink struct {
	release chan struct{}
	got     int
}

func (s *blockingSink) Write(b []*v1alpha1.ActivityRecord) error {
	<-s.release
	s.got += len(b)
	return nil
}

func TestRecordNeverBlocksAndCountsDrops(t *testing.T) {
	sink := &blockingSink{release: make(chan struct{})}
	reg := activity.NewRegister(sink, 10, nil)
	go reg.Run()
	done := make(chan struct{})
	go func() {
		for range 1000 {
			reg.Record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityInput})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Record blocked on a stalled sink")
	}
	close(sink.release)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st := reg.Stats()
	if st.Recorded+st.Dropped != 1000 || st.Dropped == 0 || st.Written != st.Recorded || uint64(sink.got) != st.Written {
		t.Errorf("stats %+v, sink got %d", st, sink.got)
	}
	// Memory is bounded by the queue plus the one batch a blocked sink holds.
	if st.Recorded > 10+activity.MaxBatch {
		t.Errorf("recorded %d with a queue of 10", st.Recorded)
	}
}

func TestJSONSinkWritesOneObjectPerLineWithAPIFieldNames(t *testing.T) {
	var buf bytes.Buffer
	sink := activity.NewJSONSink(&buf)
	a := &v1alpha1.ActivityRecord{
		Connector: "c", Time: metav1.NewMicroTime(time.Date(2026, 11, 21, 10, 0, 0, 123456000, time.UTC)),
		Type: v1alpha1.ActivityInput, Connection: &v1alpha1.ConnectionRef{ID: "c-000007", Peer: "203.0.113.9:51122", Transport: "TCP"},
		Input: &v1alpha1.InputRecord{Text: "<AUTH>\r\n", Base64: "PEFVVEg+DQo=", Bytes: 8},
		Rules: &v1alpha1.RulesRecord{Executed: []int32{3}, Scheduled: []int32{5}},
	}
	if err := sink.Write([]*v1alpha1.ActivityRecord{a, a}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines", len(lines))
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"connector", "time", "type", "connection", "input", "rules"} {
		if _, ok := m[k]; !ok {
			t.Errorf("missing %q in %s", k, lines[0])
		}
	}
	if m["time"] != "2026-11-21T10:00:00.123456Z" || !strings.Contains(lines[0], `"text":"<AUTH>\r\n"`) {
		t.Errorf("line: %s", lines[0])
	}
}

func TestTableSink(t *testing.T) {
	var buf bytes.Buffer
	sink := activity.NewTableSink(&buf, activity.TableOptions{})
	_ = sink.Write([]*v1alpha1.ActivityRecord{{
		Time: metav1.NewMicroTime(time.Now()), Type: v1alpha1.ActivityInput, Alert: true,
		Connection: &v1alpha1.ConnectionRef{ID: "c-000001", Peer: "127.0.0.1:1"},
		Input:      &v1alpha1.InputRecord{Text: "PING\r\n" + strings.Repeat("x", 100)},
		Rules:      &v1alpha1.RulesRecord{Executed: []int32{1, 2}, Scheduled: []int32{9}},
		Captures:   []v1alpha1.CaptureRecord{{Rule: 1, Variable: "user", Value: "root"}},
	}})
	out := buf.String()
	for _, want := range []string{"TYPE", "Input !", "c-000001", "1 2 →9", `in="PING\r\nxxx`, "…", `user="root"`} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

// countingSink counts the writes it gets.
type countingSink struct{ writes, got int }

func (s *countingSink) Write(b []*v1alpha1.ActivityRecord) error {
	s.writes++
	s.got += len(b)
	return nil
}

func TestLingerBatchesActivities(t *testing.T) {
	sink := &countingSink{}
	reg := activity.NewRegister(sink, 0, nil)
	reg.SetLinger(time.Second)
	go reg.Run()
	for range 100 {
		reg.Record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityInput})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if sink.got != 100 || sink.writes > 2 {
		t.Errorf("%d activities in %d writes", sink.got, sink.writes)
	}
}

// Activities are bounded by bytes as well as by count: a few large inputs fill the budget,
// the rest are dropped and counted, and a Close whose deadline passes says how many
// recorded activities the sink never took.
func TestBudgetBoundsBytesAndCloseCountsWhatIsNotFlushed(t *testing.T) {
	sink := &blockingSink{release: make(chan struct{})}
	reg := activity.NewRegister(sink, 1000, nil)
	reg.SetBudget(1 << 20)
	reg.SetLinger(0)
	go reg.Run()
	in := strings.Repeat("x", 100<<10)
	for range 100 {
		reg.Record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityInput, Input: &v1alpha1.InputRecord{Text: in, Base64: in}})
	}
	st := reg.Stats()
	if st.HeldBytes > 1<<20 || st.Recorded != 5 || st.Dropped != 95 {
		t.Fatalf("%+v: want 5 recorded (200 KiB and 512 bytes each in a 1 MiB budget), 95 dropped", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := reg.Close(ctx)
	var nf *activity.NotFlushedError
	if !errors.As(err, &nf) || nf.Pending != 5 || !strings.Contains(err.Error(), "5 activities not flushed") {
		t.Fatalf("Close = %v, want 5 activities not flushed", err)
	}
	close(sink.release)
	if err := reg.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := reg.Stats(); st.Written != 5 || st.HeldBytes != 0 || st.Pending() != 0 {
		t.Fatalf("%+v after the flush", st)
	}
}

// keepingSink keeps what it is given, and says whether it reads the evidence.
type keepingSink struct {
	readsEvidence bool
	got           []*v1alpha1.ActivityRecord
}

func (s *keepingSink) Write(b []*v1alpha1.ActivityRecord) error {
	s.got = append(s.got, b...)
	return nil
}

func (s *keepingSink) ReadsEvidence() bool { return s.readsEvidence }

// The register seals activities (hashes them into its chain) only for sinks that read the
// evidence; the others (a terminal table, -o none) get them numbered, not hashed, and an
// input or output given as text alone stays so, without the base64 the hash covers. A sink
// that does not tell, or a MultiSink with one sink that reads it, gets them sealed.
func TestRegisterSealsOnlyForSinksThatReadEvidence(t *testing.T) {
	blind := func() activity.Sink { return &keepingSink{} }
	reading := func() activity.Sink { return &keepingSink{readsEvidence: true} }
	for _, tc := range []struct {
		name string
		sink activity.Sink
		seal bool
	}{
		{"a sink that reads no evidence", blind(), false},
		{"a sink that reads it", reading(), true},
		{"a sink that does not tell", &countingSink{}, true},
		{"the table", activity.NewTableSink(&bytes.Buffer{}, activity.TableOptions{}), false},
		{"discard", activity.DiscardSink{}, false},
		{"table and discard", activity.MultiSink{activity.NewTableSink(&bytes.Buffer{}, activity.TableOptions{}), activity.DiscardSink{}}, false},
		{"table and JSON", activity.MultiSink{activity.NewTableSink(&bytes.Buffer{}, activity.TableOptions{}), activity.NewJSONSink(&bytes.Buffer{})}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := activity.ReadsEvidence(tc.sink); got != tc.seal {
				t.Errorf("ReadsEvidence = %v, want %v", got, tc.seal)
			}
		})
	}
	for _, seal := range []bool{false, true} {
		sink := &keepingSink{readsEvidence: seal}
		reg := activity.NewRegister(sink, 0, nil)
		go reg.Run()
		for range 3 {
			reg.Record(&v1alpha1.ActivityRecord{
				Type:   v1alpha1.ActivityInput,
				Input:  &v1alpha1.InputRecord{Text: "PING\r\n", Bytes: 6},
				Output: &v1alpha1.OutputRecord{Text: "+PONG\r\n", Bytes: 7},
			})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := reg.Close(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		if len(sink.got) != 3 {
			t.Fatalf("sink got %d activities, want 3", len(sink.got))
		}
		for i, a := range sink.got {
			if a.Evidence == nil || a.Evidence.Seq != uint64(i+1) {
				t.Fatalf("seal %v: activity %d not numbered: %+v", seal, i, a.Evidence)
			}
			if sealed := a.Evidence.Hash != ""; sealed != seal {
				t.Errorf("seal %v: activity %d has hash %q", seal, i, a.Evidence.Hash)
			}
			wantIn, wantOut := "", ""
			if seal {
				wantIn, wantOut = "UElORw0K", "K1BPTkcNCg=="
			}
			if a.Input.Base64 != wantIn || a.Output.Base64 != wantOut {
				t.Errorf("seal %v: activity %d has base64 %q and %q, want %q and %q", seal, i, a.Input.Base64, a.Output.Base64, wantIn, wantOut)
			}
		}
	}
}

// CompleteBase64 fills in the base64 of an input and of an output given as text alone (the
// bytes of a utf-8 connector, invalid ones included), over several of its chunks, and
// leaves any other activity as it is.
func TestCompleteBase64(t *testing.T) {
	long := strings.Repeat("\xff\x00PING é\r\n", 300) // 3,300 bytes: five chunks, the last one short
	for _, tc := range []struct {
		name   string
		in     *v1alpha1.InputRecord
		base64 string
	}{
		{"text alone", &v1alpha1.InputRecord{Text: "PING\r\n"}, "UElORw0K"},
		{"invalid utf-8 and several chunks", &v1alpha1.InputRecord{Text: long}, base64.StdEncoding.EncodeToString([]byte(long))},
		{"base64 already there", &v1alpha1.InputRecord{Text: "ÿ", Base64: "/w=="}, "/w=="},
		{"empty", &v1alpha1.InputRecord{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := &v1alpha1.OutputRecord{Text: tc.in.Text, Base64: tc.in.Base64}
			a := &v1alpha1.ActivityRecord{Type: v1alpha1.ActivityInput, Input: tc.in, Output: out}
			before := a.ApproxSize()
			activity.CompleteBase64(a)
			if a.Input.Base64 != tc.base64 {
				t.Errorf("input base64 %q, want %q", a.Input.Base64, tc.base64)
			}
			if a.Output.Base64 != tc.base64 {
				t.Errorf("output base64 %q, want %q", a.Output.Base64, tc.base64)
			}
			// The register counts an activity against its budget as it will be once complete.
			if after := a.ApproxSize(); after != before {
				t.Errorf("ApproxSize %d before, %d once complete", before, after)
			}
		})
	}
	activity.CompleteBase64(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityConnected}) // no input nor output: nothing to do
}

// WriteBase64 writes what the standard encoder does, for bytes and for text, over every
// length across several of its chunks.
func TestWriteBase64MatchesTheStandardEncoder(t *testing.T) {
	b := make([]byte, 3*768+5)
	for i := range b {
		b[i] = byte(i * 7)
	}
	for n := range len(b) + 1 {
		want := base64.StdEncoding.EncodeToString(b[:n])
		var fromBytes, fromText strings.Builder
		activity.WriteBase64(&fromBytes, b[:n])
		activity.WriteBase64(&fromText, string(b[:n]))
		if fromBytes.String() != want || fromText.String() != want {
			t.Fatalf("%d bytes: %q and %q, want %q", n, fromBytes.String(), fromText.String(), want)
		}
	}
}

// gatedSink holds its first write until released, and counts what it is given.
type gatedSink struct {
	entered, release chan struct{}
	mu               sync.Mutex
	got              int
}

func (s *gatedSink) Write(b []*v1alpha1.ActivityRecord) error {
	s.mu.Lock()
	first := s.got == 0
	s.got += len(b)
	s.mu.Unlock()
	if first {
		close(s.entered)
		<-s.release
	}
	return nil
}

func (s *gatedSink) written() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got
}

// A busy register takes what is recorded while it writes in its next round, without going
// back to its queue, where a Record would have to wake it: one wake for both activities.
func TestBusyRegisterTakesActivitiesInRounds(t *testing.T) {
	sink := &gatedSink{entered: make(chan struct{}), release: make(chan struct{})}
	reg := activity.NewRegister(sink, 0, nil)
	reg.SetLinger(time.Millisecond)
	go reg.Run()
	defer func() { _ = reg.Close(context.Background()) }()
	reg.Record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityInput})
	select {
	case <-sink.entered: // the register writes the first, held by the sink
	case <-time.After(10 * time.Second):
		t.Fatal("the register never wrote the first activity")
	}
	reg.Record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityInput})
	close(sink.release)
	waitWritten(t, sink.written, 2)
	if w := activity.Wakes(reg); w != 1 {
		t.Errorf("the register was woken %d times for two activities, the second recorded while it wrote the first", w)
	}
}

// waitWritten waits until written says n activities were written.
func waitWritten(t *testing.T, written func() int, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for written() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the sink got %d activities, want %d", written(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A register whose activities stop goes back to its queue, where the next one wakes it:
// lingering round after round with nothing to write would be a timer firing for ever in
// an idle connector. The pauses between activities only pace the test: one that comes
// before the register is back on its queue is taken in a round, and the test goes on
// with a longer pause.
func TestIdleRegisterGoesBackToItsQueue(t *testing.T) {
	sink := &gatedSink{entered: make(chan struct{}), release: make(chan struct{})}
	close(sink.release)
	reg := activity.NewRegister(sink, 0, nil)
	reg.SetLinger(time.Millisecond)
	go reg.Run()
	defer func() { _ = reg.Close(context.Background()) }()
	deadline := time.Now().Add(10 * time.Second)
	for n, pause := 1, 5*time.Millisecond; activity.Wakes(reg) < 2; n, pause = n+1, 2*pause {
		if time.Now().After(deadline) {
			t.Fatalf("%d activities recorded apart, the register woken %d times: it never went back to its queue", n-1, activity.Wakes(reg))
		}
		reg.Record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityInput})
		waitWritten(t, sink.written, n)
		time.Sleep(min(pause, time.Second))
	}
}
