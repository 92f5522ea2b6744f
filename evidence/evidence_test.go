package evidence_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/evidence"
)

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// writeLog records n activities through a real register into a JSON log with signed
// checkpoints every `every` activities, as `parley run -o json --sign-key` writes it, and
// returns its lines.
func writeLog(t *testing.T, key ed25519.PrivateKey, n, every int) []string {
	t.Helper()
	return writeLogWith(t, key, n, every, func(w io.Writer) activity.Sink { return activity.NewJSONSink(w) })
}

// writeLogWith is writeLog with the lines written by the sink newSink makes.
func writeLogWith(t *testing.T, key ed25519.PrivateKey, n, every int, newSink func(io.Writer) activity.Sink) []string {
	t.Helper()
	var out bytes.Buffer
	sink := evidence.NewSigningSink(newSink(&out), &out, evidence.NewSigner(key, every, time.Hour))
	reg := activity.NewRegister(sink, n+1, nil)
	reg.SetLinger(0)
	for i := range n {
		reg.Record(&v1alpha1.ActivityRecord{
			Connector: "redis", Time: v1alpha1Now(i), Type: v1alpha1.ActivityInput,
			Connection: &v1alpha1.ConnectionRef{ID: "c-000001", Peer: "203.0.113.9:51122", Transport: v1alpha1.TransportTCP},
			// Bytes that are not UTF-8: the hash must survive the JSON round trip.
			Input:  &v1alpha1.InputRecord{Text: fmt.Sprintf("AUTH admin hunter%d \xff\r\n", i), Base64: "QVVUSA==", Bytes: 4},
			Memory: &v1alpha1.MemorySnapshot{Global: map[string]string{"hits": fmt.Sprint(i), "b": "<&>"}},
		})
	}
	go reg.Run()
	if err := reg.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(false); err != nil {
		t.Fatal(err)
	}
	return strings.SplitAfter(strings.TrimSuffix(out.String(), "\n"), "\n")
}

func v1alpha1Now(i int) (m metav1.MicroTime) {
	m.Time = time.Date(2026, 11, 21, 10, 0, 0, i*1000, time.UTC)
	return m
}

func verify(t *testing.T, lines []string, pub ed25519.PublicKey) *evidence.Report {
	t.Helper()
	r, err := evidence.Verify(strings.NewReader(strings.Join(lines, "")), pub)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	_ = evidence.WriteReport(&b, r)
	t.Logf("report:\n%s", b.String())
	return r
}

func kinds(r *evidence.Report) []string {
	var k []string
	for _, p := range r.Problems {
		k = append(k, fmt.Sprintf("%s@%d", p.Kind, p.Seq))
	}
	return k
}

// activityLines are the indexes of the lines holding activities, in order.
func activityLines(lines []string) []int {
	var idx []int
	for i, l := range lines {
		if !strings.HasPrefix(l, `{"checkpoint"`) {
			idx = append(idx, i)
		}
	}
	return idx
}

func TestIntactLogVerifies(t *testing.T) {
	key := newKey(t)
	lines := writeLog(t, key, 25, 10)
	if len(lines) != 25+3 {
		t.Fatalf("%d lines, want 25 activities and 3 checkpoints (at 10, 20, and the end)", len(lines))
	}
	r := verify(t, lines, key.Public().(ed25519.PublicKey))
	if r.Tampered() || r.Gaps() != 0 {
		t.Fatalf("problems %v, %d gaps in an intact log", kinds(r), r.Gaps())
	}
	if c := r.Chains; len(c) != 1 || c[0].First != 1 || c[0].Last != 25 || c[0].Signed != 25 || c[0].Checkpoints != 3 {
		t.Fatalf("chains %+v, want one of 1-25 signed up to 25 by 3 checkpoints", c)
	}
}

func TestTamperingIsNamed(t *testing.T) {
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	lines := writeLog(t, key, 25, 10)
	acts := activityLines(lines)
	without := func(i int) []string {
		return append(append([]string(nil), lines[:i]...), lines[i+1:]...)
	}

	t.Run("deleted", func(t *testing.T) {
		r := verify(t, without(acts[4]), pub)
		c := r.Chains[0]
		if len(c.Gaps) != 1 || c.Gaps[0] != (evidence.Gap{From: 5, To: 5}) || r.Gaps() != 1 {
			t.Fatalf("gaps %+v, want seq 5 missing and not bridged", c.Gaps)
		}
	})
	t.Run("edited", func(t *testing.T) {
		edited := append([]string(nil), lines...)
		edited[acts[6]] = strings.Replace(edited[acts[6]], "hunter6", "hunter7", 1)
		r := verify(t, edited, pub)
		if got := kinds(r); len(got) != 1 || got[0] != "altered@7" {
			t.Fatalf("problems %v, want altered@7", got)
		}
	})
	t.Run("edited and rehashed", func(t *testing.T) {
		// The forger recomputes the record's own hash: the next record's link breaks,
		// and the checkpoint at 10 no longer matches if the forger chains on.
		edited := append([]string(nil), lines...)
		var rec v1alpha1.ActivityRecord
		if err := json.Unmarshal([]byte(edited[acts[6]]), &rec); err != nil {
			t.Fatal(err)
		}
		rec.Input.Text = "innocent\r\n"
		rec.Evidence.Hash = string(evidence.Hash(nil, &rec, evidence.CanonicalJSON))
		edited[acts[6]] = string(activity.AppendJSON(nil, &rec))
		r := verify(t, edited, pub)
		if got := kinds(r); len(got) != 1 || got[0] != "broken-link@8" {
			t.Fatalf("problems %v, want broken-link@8", got)
		}
	})
	t.Run("inserted", func(t *testing.T) {
		// A forged record claiming seq 12, chained to 11 with a correct hash of its own.
		var rec v1alpha1.ActivityRecord
		if err := json.Unmarshal([]byte(lines[acts[11]]), &rec); err != nil {
			t.Fatal(err)
		}
		rec.Message = "forged"
		rec.Evidence.Hash = string(evidence.Hash(nil, &rec, evidence.CanonicalJSON))
		forged := string(activity.AppendJSON(nil, &rec))
		inserted := append(append(append([]string(nil), lines[:acts[11]]...), forged), lines[acts[11]:]...)
		r := verify(t, inserted, pub)
		// The forgery comes first: the true seq 12 conflicts with it, and seq 13 does not
		// link to it.
		if got := strings.Join(kinds(r), " "); got != "conflict@12 broken-link@13" {
			t.Fatalf("problems %v, want conflict@12 broken-link@13", got)
		}
	})
	t.Run("reordered", func(t *testing.T) {
		swapped := append([]string(nil), lines...)
		swapped[acts[2]], swapped[acts[3]] = swapped[acts[3]], swapped[acts[2]]
		r := verify(t, swapped, pub)
		if got := kinds(r); len(got) != 1 || got[0] != "reordered@3" {
			t.Fatalf("problems %v, want reordered@3", got)
		}
	})
	t.Run("duplicate delivery is not tampering", func(t *testing.T) {
		again := append(append([]string(nil), lines...), lines[acts[3]])
		r := verify(t, again, pub)
		if r.Tampered() || r.Chains[0].Duplicates != 1 {
			t.Fatalf("problems %v, duplicates %d; want none and 1", kinds(r), r.Chains[0].Duplicates)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		other := newKey(t).Public().(ed25519.PublicKey)
		r := verify(t, lines, other)
		got := kinds(r)
		want := []string{"bad-signature@10", "bad-signature@20", "bad-signature@25", "unsigned@0"}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("problems %v, want %v", got, want)
		}
		if !strings.Contains(r.Problems[0].Detail, evidence.KeyID(key.Public().(ed25519.PublicKey))) {
			t.Errorf("detail %q does not name the key that signed", r.Problems[0].Detail)
		}
	})
	t.Run("forged checkpoint", func(t *testing.T) {
		// Rewriting the tail from seq 7 and signing it with another key does not help.
		forger := newKey(t)
		cp := evidence.Sign(forger, "x", 1, "sha256:00", time.Now())
		b, _ := json.Marshal(evidence.CheckpointLine{Checkpoint: cp})
		r := verify(t, append(append([]string(nil), lines...), string(b)+"\n"), pub)
		if got := kinds(r); len(got) != 1 || got[0] != "bad-signature@1" {
			t.Fatalf("problems %v, want bad-signature@1", got)
		}
	})
}

// The compact lines of parley run (a line without the hashes, rulesRef and transport the
// lines before it gave, its peer always there): intact, they verify as whole lines do; tampered with, the checkpoints
// after the change no longer match, and a line taken out is a gap its successor does not
// bridge.
func TestCompactLogVerifies(t *testing.T) {
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	lines := writeLogWith(t, key, 25, 10, func(w io.Writer) activity.Sink { return activity.NewCompactJSONSink(w) })
	acts := activityLines(lines)
	if strings.Contains(lines[acts[1]], `"hash"`) || strings.Contains(lines[acts[1]], `"transport"`) || !strings.Contains(lines[acts[1]], `"peer"`) ||
		!strings.Contains(lines[acts[0]], `"hash"`) {
		t.Fatalf("the first line is not whole, or the second not compact:\n%s%s", lines[acts[0]], lines[acts[1]])
	}
	r := verify(t, lines, pub)
	if r.Tampered() || r.Gaps() != 0 {
		t.Fatalf("problems %v, %d gaps in an intact log", kinds(r), r.Gaps())
	}
	if c := r.Chains; len(c) != 1 || c[0].First != 1 || c[0].Last != 25 || c[0].Signed != 25 || c[0].Checkpoints != 3 {
		t.Fatalf("chains %+v, want one of 1-25 signed up to 25 by 3 checkpoints", c)
	}

	edited := append([]string(nil), lines...)
	edited[acts[13]] = strings.Replace(edited[acts[13]], "hunter13", "hunter14", 1)
	if got := strings.Join(kinds(verify(t, edited, pub)), " "); got != "checkpoint-mismatch@20 checkpoint-mismatch@25" {
		t.Errorf("edited seq 14: problems %v, want the checkpoints at 20 and 25 mismatched", got)
	}
	deleted := append(append([]string(nil), lines[:acts[4]]...), lines[acts[4]+1:]...)
	r = verify(t, deleted, pub)
	if got := strings.Join(kinds(r), " "); got != "checkpoint-mismatch@10 checkpoint-mismatch@20 checkpoint-mismatch@25 unsigned@0" {
		t.Errorf("deleted seq 5: problems %v, want every checkpoint after it mismatched", got)
	}
	if g := r.Chains[0].Gaps; len(g) != 1 || g[0] != (evidence.Gap{From: 5, To: 5}) {
		t.Errorf("deleted seq 5: gaps %+v, want seq 5 not bridged", g)
	}
	// The first line, whole, names the connection's peer: without it the others cannot be
	// restored.
	r = verify(t, lines[1:], pub)
	if len(r.Problems) == 0 || r.Problems[0].Kind != evidence.Unreadable || !strings.Contains(r.Problems[0].Detail, "missing") {
		t.Errorf("first line removed: problems %v", r.Problems)
	}
}

// A register that is full drops activities: the chain numbers them anyway, so the drop is
// a gap, bridged by the next activity's link.
func TestDropsAtTheRegisterAreLinkedGaps(t *testing.T) {
	t.Run("full lines", func(t *testing.T) {
		dropsAreLinkedGaps(t, func(w io.Writer) activity.Sink { return activity.NewJSONSink(w) })
	})
	t.Run("compact lines", func(t *testing.T) {
		dropsAreLinkedGaps(t, func(w io.Writer) activity.Sink { return activity.NewCompactJSONSink(w) })
	})
}

func dropsAreLinkedGaps(t *testing.T, newSink func(io.Writer) activity.Sink) {
	key := newKey(t)
	var out bytes.Buffer
	entered, release := make(chan struct{}), make(chan struct{})
	gate := &gateSink{next: newSink(&out), entered: entered, release: release}
	sink := evidence.NewSigningSink(gate, &out, evidence.NewSigner(key, 1000, time.Hour))
	reg := activity.NewRegister(sink, 3, nil)
	reg.SetLinger(0)
	for i := range 5 { // 3 fit, 2 dropped: seq 4 and 5
		reg.Record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityInput, Time: v1alpha1Now(i)})
	}
	go reg.Run()
	<-entered                                                                                // the register took the 3 out of its queue: room again
	reg.Record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityEnded, Time: v1alpha1Now(9)}) // seq 6
	close(release)
	if err := reg.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(false); err != nil {
		t.Fatal(err)
	}
	if s := reg.Stats(); s.Dropped != 2 {
		t.Fatalf("dropped %d, want 2", s.Dropped)
	}
	r := verify(t, strings.SplitAfter(out.String(), "\n"), key.Public().(ed25519.PublicKey))
	if r.Tampered() || r.Gaps() != 0 {
		t.Fatalf("problems %v", kinds(r))
	}
	if g := r.Chains[0].Gaps; len(g) != 1 || g[0] != (evidence.Gap{From: 4, To: 5, Linked: true}) {
		t.Fatalf("gaps %+v, want 4-5 linked", g)
	}
}

// kubectl get activities -o json: a List whose items are Activity objects in name order,
// with the engine's preview on the input.
func TestListOfActivityObjects(t *testing.T) {
	key := newKey(t)
	lines := writeLog(t, key, 12, 5)
	var items []map[string]any
	var checkpoints []string
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if _, ok := m["checkpoint"]; ok {
			checkpoints = append(checkpoints, l)
			continue
		}
		m["apiVersion"], m["kind"] = "parley.io/v1alpha1", "Activity"
		m["metadata"] = map[string]any{"name": fmt.Sprintf("redis-abc-%d", len(items)+1)}
		m["input"].(map[string]any)["preview"] = "AUTH admin…"
		items = append(items, m)
	}
	// Name order: 1, 10, 11, 12, 2, ...
	items[1], items[9] = items[9], items[1]
	list, _ := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, "", "    ")
	r := verify(t, append([]string{string(list) + "\n"}, checkpoints...), key.Public().(ed25519.PublicKey))
	if r.Tampered() || r.Gaps() != 0 || r.Chains[0].Signed != 12 {
		t.Fatalf("problems %v, chains %+v", kinds(r), r.Chains)
	}
}

func TestSignerIntervalAndEvery(t *testing.T) {
	key := newKey(t)
	s := evidence.NewSigner(key, 3, time.Hour)
	rec := func(seq uint64) *v1alpha1.ActivityRecord {
		return &v1alpha1.ActivityRecord{Evidence: &v1alpha1.EvidenceRecord{Chain: "a", Seq: seq, Hash: fmt.Sprint("h", seq)}}
	}
	if cps := s.Observe([]*v1alpha1.ActivityRecord{rec(1), rec(2)}); len(cps) != 0 {
		t.Fatalf("%d checkpoints after 2 of every 3", len(cps))
	}
	cps := s.Observe([]*v1alpha1.ActivityRecord{rec(3), rec(4)})
	if len(cps) != 1 || cps[0].Seq != 3 || cps[0].Hash != "h3" || !cps[0].Valid(key.Public().(ed25519.PublicKey)) {
		t.Fatalf("checkpoints %+v, want one valid at 3", cps)
	}
	if cps := s.Due(false); len(cps) != 0 {
		t.Fatalf("%d checkpoints due before the interval", len(cps))
	}
	// The interval, without a clock: a signer whose interval is a nanosecond.
	quick := evidence.NewSigner(key, 1000, time.Nanosecond)
	quick.Observe([]*v1alpha1.ActivityRecord{rec(1)})
	time.Sleep(time.Millisecond) // longer than the interval; not a timed assertion
	if cps := quick.Due(false); len(cps) != 1 || cps[0].Seq != 1 {
		t.Fatalf("checkpoints %+v, want one at 1 once the interval passed", cps)
	}
	if cps := s.Due(true); len(cps) != 1 || cps[0].Seq != 4 {
		t.Fatalf("final checkpoints %+v, want one at 4", cps)
	}
}

// TestSignerForgetsQuietSignedChains: a chain (one process's) is forgotten once everything of
// it is signed and it stayed quiet, never while an activity of it is unsigned; a forgotten
// chain that writes again is followed again from its new activity.
func TestSignerForgetsQuietSignedChains(t *testing.T) {
	key := newKey(t)
	// Intervals of a nanosecond stand for a clock: a millisecond is many intervals.
	s := evidence.NewSigner(key, 1000, time.Nanosecond)
	rec := func(chain string, seq uint64) *v1alpha1.ActivityRecord {
		return &v1alpha1.ActivityRecord{Evidence: &v1alpha1.EvidenceRecord{Chain: chain, Seq: seq, Hash: fmt.Sprint(chain, seq)}}
	}
	prune := func() []string {
		var gone []string
		s.Prune(func(chain string) { gone = append(gone, chain) })
		return gone
	}
	s.Observe([]*v1alpha1.ActivityRecord{rec("ended", 1)})
	time.Sleep(time.Millisecond) // many intervals; not a timed assertion
	if gone := prune(); len(gone) != 0 {
		t.Fatalf("forgot %v with an activity unsigned", gone)
	}
	if cps := s.Due(false); len(cps) != 1 || cps[0].Chain != "ended" {
		t.Fatalf("checkpoints %+v, want one of the chain", cps)
	}
	time.Sleep(time.Millisecond)
	if gone := prune(); len(gone) != 1 || gone[0] != "ended" {
		t.Fatalf("forgot %v, want the quiet signed chain", gone)
	}
	if gone := prune(); len(gone) != 0 {
		t.Fatalf("forgot %v twice", gone)
	}
	// Seen again: followed, and signed from its new activity.
	s.Observe([]*v1alpha1.ActivityRecord{rec("ended", 2)})
	if cps := s.Due(true); len(cps) != 1 || cps[0].Seq != 2 {
		t.Fatalf("checkpoints %+v, want one at 2", cps)
	}
	// A chain whose activity is newer than the forgetting age stays known.
	slow := evidence.NewSigner(key, 1000, time.Hour)
	slow.Observe([]*v1alpha1.ActivityRecord{rec("live", 1)})
	slow.Due(true)
	slow.Prune(func(chain string) { t.Errorf("forgot %s, active a moment ago", chain) })
}

func TestCanonicalEncodingsAgree(t *testing.T) {
	a := &v1alpha1.ActivityRecord{Type: v1alpha1.ActivityInput, Message: "bad \xfe byte, <html> & \u2028",
		Input: &v1alpha1.InputRecord{Text: "\x00\xff", Preview: "x"}, Evidence: &v1alpha1.EvidenceRecord{Chain: "c", Seq: 1}}
	fast := evidence.Hash(nil, a, activity.AppendCanonicalJSON)
	ref := evidence.Hash(nil, a, evidence.CanonicalJSON)
	if !bytes.Equal(fast, ref) {
		t.Fatalf("AppendCanonicalJSON hashes to %s, encoding/json to %s", fast, ref)
	}
	if a.Input.Preview != "x" {
		t.Fatalf("Hash changed the preview")
	}
}

// gateSink holds its first batch until released, telling when it has it.
type gateSink struct {
	next             evidence.BatchWriter
	entered, release chan struct{}
	first            bool
}

func (g *gateSink) Write(b []*v1alpha1.ActivityRecord) error {
	if !g.first {
		g.first = true
		close(g.entered)
		<-g.release
	}
	return g.next.Write(b)
}

// Number fills in the evidence a caller made room for with the activity (the connector
// allocates both at once), and makes it where there is none; Seal numbers an activity whose
// room is still empty; the chain links and hashes them alike.
func TestNumberFillsTheRoomMadeForIt(t *testing.T) {
	c := evidence.NewChain(nil)
	room := &v1alpha1.EvidenceRecord{Hash: "stale"}
	withRoom := &v1alpha1.ActivityRecord{Type: v1alpha1.ActivityInput, Evidence: room}
	without := &v1alpha1.ActivityRecord{Type: v1alpha1.ActivityInput}
	unnumbered := &v1alpha1.ActivityRecord{Type: v1alpha1.ActivityEnded, Evidence: &v1alpha1.EvidenceRecord{}}
	c.Number(withRoom)
	c.Number(without)
	if withRoom.Evidence != room || *room != (v1alpha1.EvidenceRecord{Chain: c.ID(), Seq: 1}) {
		t.Fatalf("numbered with room: %p %+v, want %p with seq 1", withRoom.Evidence, *withRoom.Evidence, room)
	}
	if without.Evidence == nil || *without.Evidence != (v1alpha1.EvidenceRecord{Chain: c.ID(), Seq: 2}) {
		t.Fatalf("numbered without room: %+v, want seq 2", without.Evidence)
	}
	prev := ""
	for i, a := range []*v1alpha1.ActivityRecord{withRoom, without, unnumbered} {
		c.Seal(a)
		if a.Evidence.Seq != uint64(i+1) || a.Evidence.PrevHash != prev {
			t.Fatalf("activity %d sealed as %+v, want seq %d after %q", i, *a.Evidence, i+1, prev)
		}
		if want := string(evidence.Hash(nil, a, evidence.CanonicalJSON)); a.Evidence.Hash != want {
			t.Fatalf("activity %d hash %s, want %s", i, a.Evidence.Hash, want)
		}
		prev = a.Evidence.Hash
	}
}
