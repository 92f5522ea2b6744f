package activity_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/evidence"
)

// compactSequence makes n random activities of a few connectors and connections, as one
// output sees them: rulesRefs that change and vanish, peers that change, connections that
// end and come back, texts whose base64 is and is not their bytes, and activities numbered
// but never sealed (dropped by a full register: gaps their successor bridges).
func compactSequence(seed int64, n int) []*v1alpha1.ActivityRecord {
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	f := fill(seed)
	chain := evidence.NewChain(activity.AppendCanonicalJSON)
	types := []v1alpha1.ActivityType{v1alpha1.ActivityConnected, v1alpha1.ActivityInput, v1alpha1.ActivityInput,
		v1alpha1.ActivityGreeted, v1alpha1.ActivityAsync, v1alpha1.ActivityEnded, v1alpha1.ActivityBroken,
		v1alpha1.ActivityTimedOut, v1alpha1.ActivityRejected, v1alpha1.ActivityConnectorStopped}
	refs := []*v1alpha1.RulesRef{nil, {Name: "r", Hash: "sha256:01"}, {Name: "r", Generation: 2, Hash: "sha256:02"}}
	pick := func(s ...string) string { return s[rng.IntN(len(s))] }
	var out []*v1alpha1.ActivityRecord
	for len(out) < n {
		var a *v1alpha1.ActivityRecord
		{
			// Only the strings from the wire may hold bytes that are not UTF-8 (the hash
			// is of the record read back, each such byte U+FFFD: docs/evidence.md): the
			// others are made valid by a JSON round trip, and the peer's bytes put back
			// into the texts (and a session key, below).
			raw := &v1alpha1.ActivityRecord{}
			f.Fill(raw)
			b, _ := json.Marshal(raw)
			a = &v1alpha1.ActivityRecord{}
			if err := json.Unmarshal(b, a); err != nil {
				panic(err)
			}
			if a.Input != nil && raw.Input != nil {
				a.Input.Text = raw.Input.Text
			}
			if a.Output != nil && raw.Output != nil {
				a.Output.Text = raw.Output.Text
			}
			a.Message = raw.Message
		}
		a.Connector = pick("a", "b", "")
		a.Type = types[rng.IntN(len(types))]
		a.RulesRef = refs[rng.IntN(len(refs))]
		if a.Connection != nil {
			a.Connection.ID = pick("c-1", "c-2", "c-3")
			a.Connection.Peer = pick("127.0.0.1:1", "127.0.0.1:1", "[::1]:2", "")
			a.Connection.Transport = v1alpha1.Transport(pick("TCP", "TCP", "UDP"))
			a.Connection.Session = pick("", "", "s", "s\xff") // a key cut from an input
		}
		for _, p := range []struct{ text, b64 *string }{
			{ptr(a.Input, func(i *v1alpha1.InputRecord) *string { return &i.Text }), ptr(a.Input, func(i *v1alpha1.InputRecord) *string { return &i.Base64 })},
			{ptr(a.Output, func(o *v1alpha1.OutputRecord) *string { return &o.Text }), ptr(a.Output, func(o *v1alpha1.OutputRecord) *string { return &o.Base64 })},
		} {
			if p.text != nil && rng.IntN(3) > 0 {
				*p.b64 = base64.StdEncoding.EncodeToString([]byte(*p.text)) // the text is the bytes
			}
		}
		// Often the byte count is the text's length (a compact line then leaves it out).
		if a.Input != nil && rng.IntN(2) == 0 {
			a.Input.Bytes, a.Input.Truncated = int32(len(a.Input.Text)), false
		}
		if a.Output != nil && rng.IntN(2) == 0 {
			a.Output.Bytes, a.Output.Truncated = int32(len(a.Output.Text)), false
		}
		a.Evidence = nil
		chain.Number(a)
		if rng.IntN(10) == 0 {
			continue // dropped by the register: numbered, never sealed
		}
		chain.Seal(a)
		out = append(out, a)
	}
	return out
}

func ptr[R any](r *R, field func(*R) *string) *string {
	if r == nil {
		return nil
	}
	return field(r)
}

// restore reads compact lines back with evidence.LineReader.
func restore(t *testing.T, lines []byte) []*v1alpha1.ActivityRecord {
	t.Helper()
	r := evidence.NewLineReader()
	var recs []*v1alpha1.ActivityRecord
	for i, line := range bytes.SplitAfter(bytes.TrimSuffix(lines, []byte("\n")), []byte("\n")) {
		rec, _, err := r.Restore(line)
		if err != nil {
			t.Fatalf("line %d: %v: %s", i+1, err, line)
		}
		recs = append(recs, rec)
	}
	return recs
}

// readBack is a's full line as a reader of it sees it: each byte of its strings that is
// not valid UTF-8 read as U+FFFD.
func readBack(t *testing.T, a *v1alpha1.ActivityRecord) []byte {
	t.Helper()
	var rec v1alpha1.ActivityRecord
	if err := json.Unmarshal(activity.AppendJSON(nil, a), &rec); err != nil {
		t.Fatal(err)
	}
	return activity.AppendJSON(nil, &rec)
}

// Compact lines, read back in order, are the records that were written: their full
// encoding, evidence hashes included, is byte for byte the original's.
func TestCompactLinesRestoreToTheRecords(t *testing.T) {
	for seed := range int64(20) {
		recs := compactSequence(seed, 400)
		var out bytes.Buffer
		sink := activity.NewCompactJSONSink(&out)
		for i := 0; i < len(recs); i += 7 { // batches of several
			if err := sink.Write(recs[i:min(i+7, len(recs))]); err != nil {
				t.Fatal(err)
			}
		}
		var full bytes.Buffer
		if err := activity.NewJSONSink(&full).Write(recs); err != nil {
			t.Fatal(err)
		}
		if out.Len() >= full.Len() {
			t.Errorf("seed %d: compact lines %d bytes, full %d: nothing left out", seed, out.Len(), full.Len())
		}
		got := restore(t, out.Bytes())
		if len(got) != len(recs) {
			t.Fatalf("seed %d: %d records restored, want %d", seed, len(got), len(recs))
		}
		for i := range recs {
			want := readBack(t, recs[i])
			if g := activity.AppendJSON(nil, got[i]); !bytes.Equal(g, want) {
				t.Fatalf("seed %d, record %d:\ncompact %s\n    got %s\n   want %s", seed, i,
					bytes.SplitAfter(out.Bytes(), []byte("\n"))[i], g, want)
			}
		}
	}
}

// Two outputs in one file (parley run appending to its --log-file again, or logs
// concatenated), read by one reader: what the reader remembers of the first does not leak
// into the second, whose writer started afresh.
func TestCompactLinesOfTwoRunsInOneFile(t *testing.T) {
	var out bytes.Buffer
	var all []*v1alpha1.ActivityRecord
	for seed := range int64(6) {
		recs := compactSequence(seed, 100)
		if seed%2 == 1 { // a run whose first lines have no rulesRef
			for _, a := range recs[:10] {
				a.RulesRef = nil
				a.Evidence.Hash = ""
			}
			// Sealed again: the hashes cover the records as changed.
			chain := evidence.NewChain(activity.AppendCanonicalJSON)
			for _, a := range recs {
				seq := a.Evidence.Seq
				a.Evidence = nil
				chain.Number(a)
				a.Evidence.Seq = seq
				chain.Seal(a)
			}
		}
		if err := activity.NewCompactJSONSink(&out).Write(recs); err != nil {
			t.Fatal(err)
		}
		all = append(all, recs...)
	}
	got := restore(t, out.Bytes())
	for i := range all {
		if g, want := activity.AppendJSON(nil, got[i]), readBack(t, all[i]); !bytes.Equal(g, want) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, g, want)
		}
	}
}

// failingWriter fails its n-th write.
type failingWriter struct {
	out     bytes.Buffer
	n, seen int
}

func (w *failingWriter) Write(p []byte) (int, error) {
	w.seen++
	if w.seen == w.n {
		return 0, errors.New("disk full")
	}
	return w.out.Write(p)
}

// After a failed write, whose lines a reader never gets, the next lines are whole again.
func TestCompactLinesAfterAFailedWrite(t *testing.T) {
	recs := compactSequence(7, 60)
	w := &failingWriter{n: 3}
	sink := activity.NewCompactJSONSink(w)
	var kept []*v1alpha1.ActivityRecord
	for i := 0; i < len(recs); i += 10 {
		batch := recs[i : i+10]
		if err := sink.Write(batch); err == nil {
			kept = append(kept, batch...)
		} else if i != 20 {
			t.Fatalf("batch at %d: %v", i, err)
		}
	}
	got := restore(t, w.out.Bytes())
	for i := range kept {
		if g, want := activity.AppendJSON(nil, got[i]), readBack(t, kept[i]); !bytes.Equal(g, want) {
			t.Fatalf("record %d:\n got %s\nwant %s", i, g, want)
		}
	}
}

// The line of a request in the benchmark (docs/performance.md): a PING answered by a PONG on
// a live connection, deep into the chain, fits the 250 bytes per request of the goal. The
// full line is about 630.
func TestCompactInputLineOfTheBenchmark(t *testing.T) {
	conn := &v1alpha1.ConnectionRef{ID: "c-012345", Peer: "127.0.0.1:40474", Transport: v1alpha1.TransportTCP}
	ref := &v1alpha1.RulesRef{Name: "bench-tcp", Hash: "sha256:" + strings.Repeat("c6", 32)}
	chain := evidence.NewChain(activity.AppendCanonicalJSON)
	c := activity.NewCompactor()
	var line []byte
	for seq := range 3 {
		a := &v1alpha1.ActivityRecord{Connector: "bench-tcp", Time: metav1.NewMicroTime(time.Date(2026, 12, 6, 17, 38, 8, seq*1000, time.UTC)), Type: v1alpha1.ActivityInput,
			Connection: conn, RulesRef: ref, Rules: &v1alpha1.RulesRecord{Executed: []int32{1}},
			Input:  &v1alpha1.InputRecord{Text: "PING\r\n", Base64: "UElORw0K", Bytes: 6},
			Output: &v1alpha1.OutputRecord{Text: "+PONG\r\n", Base64: "K1BPTkcNCg==", Bytes: 7}}
		chain.Number(a)
		a.Evidence.Seq += 9_999_990 // a ten-million-request run
		chain.Seal(a)
		line = c.Append(line[:0], a)
		if seq == 0 && (!strings.Contains(string(line), `"hash":"sha256:`) || !strings.Contains(string(line), `"transport":"TCP"`)) {
			t.Fatalf("the first line is not whole: %s", line)
		}
		if !strings.Contains(string(line), `"peer":"127.0.0.1:40474"`) {
			t.Fatalf("a line without its peer: %s", line)
		}
	}
	if len(line) > 250 {
		t.Fatalf("%d bytes: %s", len(line), line)
	}
	t.Logf("%d bytes: %s", len(line), line)
}

// BenchmarkCompactJSON: a compact line against a whole one, for the benchmark's Input
// activity on a live connection (docs/performance.md).
func BenchmarkCompactJSON(b *testing.B) {
	conn := &v1alpha1.ConnectionRef{ID: "c-000002", Peer: "127.0.0.1:40474", Transport: v1alpha1.TransportTCP}
	ref := &v1alpha1.RulesRef{Name: "bench-tcp", Hash: "sha256:" + strings.Repeat("c6", 32)}
	chain := evidence.NewChain(activity.AppendCanonicalJSON)
	recs := make([]*v1alpha1.ActivityRecord, 1024)
	for i := range recs {
		recs[i] = &v1alpha1.ActivityRecord{Connector: "bench-tcp", Time: metav1.NewMicroTime(time.Date(2026, 12, 6, 17, 38, 8, i*1000, time.UTC)),
			Type: v1alpha1.ActivityInput, Connection: conn, RulesRef: ref, Rules: &v1alpha1.RulesRecord{Executed: []int32{1}},
			Input:  &v1alpha1.InputRecord{Text: "PING\r\n", Base64: "UElORw0K", Bytes: 6},
			Output: &v1alpha1.OutputRecord{Text: "+PONG\r\n", Base64: "K1BPTkcNCg==", Bytes: 7}}
		chain.Seal(recs[i])
	}
	b.Run("whole", func(b *testing.B) {
		var buf []byte
		for i := 0; b.Loop(); i++ {
			buf = activity.AppendJSON(buf[:0], recs[i%len(recs)])
		}
		b.ReportMetric(float64(len(buf)), "bytes/line")
	})
	b.Run("compact", func(b *testing.B) {
		var buf []byte
		c := activity.NewCompactor()
		for i := 0; b.Loop(); i++ {
			if i%len(recs) == 0 {
				c = activity.NewCompactor() // the chain starts again: the next line is whole
			}
			buf = c.Append(buf[:0], recs[i%len(recs)])
		}
		b.ReportMetric(float64(len(buf)), "bytes/line")
	})
}
