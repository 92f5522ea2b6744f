package evidence

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// Problem kinds: each is tampering (or corruption), never a consequence of filtering.
const (
	// Altered: the record's content does not hash to its evidence.hash.
	Altered = "altered"
	// BrokenLink: the record follows its predecessor by sequence, but its prevHash is not
	// the predecessor's hash: a record in between was inserted, or the predecessor altered.
	BrokenLink = "broken-link"
	// Reordered: the record comes after one with a higher sequence number.
	Reordered = "reordered"
	// Conflict: two different records claim the same place in the chain.
	Conflict = "conflict"
	// BadSignature: a checkpoint that the key did not sign.
	BadSignature = "bad-signature"
	// CheckpointMismatch: a validly signed checkpoint names a hash that the record at its
	// sequence does not have.
	CheckpointMismatch = "checkpoint-mismatch"
	// Unsigned: the key signed no checkpoint of the chain: nothing proves its records.
	Unsigned = "unsigned"
	// Unreadable: a value that is neither an activity, a list of them, nor a checkpoint.
	Unreadable = "unreadable"
	// NoEvidence: an activity without evidence.
	NoEvidence = "no-evidence"
)

// Problem is one finding that makes the log untrustworthy.
type Problem struct {
	// Record is the position of the record in the input, from 1 (activities and
	// checkpoints counted together); 0 when the problem concerns a whole chain.
	Record int
	Chain  string
	Seq    uint64
	Kind   string
	Detail string
}

func (p Problem) String() string {
	where := fmt.Sprintf("chain %s seq %d", p.Chain, p.Seq)
	if p.Record > 0 {
		where = fmt.Sprintf("record %d (%s)", p.Record, where)
	}
	return fmt.Sprintf("%s: %s: %s", where, p.Kind, p.Detail)
}

// Gap is a run of sequence numbers of a chain with no record.
type Gap struct {
	From, To uint64
	// Linked says that the record after the gap names the record before it as its
	// predecessor: the activities were dropped where they were born (the connector's
	// register was full), before they were hashed. Otherwise they were dropped, filtered or
	// deleted later.
	Linked bool
}

// ChainReport is what was found of one chain.
type ChainReport struct {
	Chain string
	// First and Last are the lowest and highest sequence numbers present; Records counts
	// the distinct records, Duplicates the identical repeats (at-least-once delivery).
	First, Last         uint64
	Records, Duplicates int
	Gaps                []Gap
	// Signed is the highest sequence number covered by a valid checkpoint whose record is
	// present and unaltered (0: none); SignedBy the key ids that signed.
	Signed      uint64
	Checkpoints int
}

// Report is the result of Verify.
type Report struct {
	Chains   []ChainReport
	Problems []Problem
}

// Tampered says whether anything proves the log altered (problems).
func (r *Report) Tampered() bool { return len(r.Problems) > 0 }

// Gaps counts the gaps that no record bridges (Linked ones are drops at the source).
func (r *Report) Gaps() int {
	n := 0
	for _, c := range r.Chains {
		for _, g := range c.Gaps {
			if !g.Linked {
				n++
			}
		}
	}
	return n
}

type entry struct {
	pos int
	rec *v1alpha1.ActivityRecord
	// ordered: the record came in writing order (a log line, a webhook batch), not as an
	// item of a list, whose order (by name) says nothing of the chain's.
	ordered bool
	// computed: a compact line's hash, computed from it and the lines before (LineReader).
	computed bool
}

// Verify reads activities and checkpoints from r, each a JSON value: an activity (the
// JSON of an ActivityRecord or of an Activity object), a checkpoint line, a list of
// activities (kind List or ActivityList, as kubectl prints them) or a webhook batch
// ({"activities": [...], "checkpoints": [...]}), or a line of the engine's activity log ({"msg": "activity",
// "activity": {...}} and {"msg": "checkpoint", "checkpoint": {...}}). It checks every record's hash, the links of each chain, and
// the checkpoints against pub.
func Verify(r io.Reader, pub ed25519.PublicKey) (*Report, error) {
	report := &Report{}
	chains := map[string][]entry{}
	var order []string
	var checkpoints []entry2
	pos := 0
	lines := NewLineReader()
	add := func(rec *v1alpha1.ActivityRecord, ordered, computed bool) {
		pos++
		if rec.Evidence == nil {
			report.Problems = append(report.Problems, Problem{Record: pos, Kind: NoEvidence, Detail: "the activity carries no evidence"})
			return
		}
		id := rec.Evidence.Chain
		if _, ok := chains[id]; !ok {
			order = append(order, id)
		}
		chains[id] = append(chains[id], entry{pos: pos, rec: rec, ordered: ordered, computed: computed})
	}
	dec := json.NewDecoder(r)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		var probe struct {
			Checkpoint *Checkpoint      `json:"checkpoint"`
			Items      *json.RawMessage `json:"items"`
			Activities *json.RawMessage `json:"activities"`
			// Checkpoints are those of a webhook batch, {"checkpoint": {...}} each.
			Checkpoints []CheckpointLine `json:"checkpoints"`
			Type        string           `json:"type"`
			// Activity is the activity of a line of the engine's activity log.
			Activity *json.RawMessage `json:"activity"`
		}
		if err := json.Unmarshal(raw, &probe); err != nil {
			pos++
			report.Problems = append(report.Problems, Problem{Record: pos, Kind: Unreadable, Detail: err.Error()})
			continue
		}
		switch {
		case probe.Checkpoint != nil:
			pos++
			checkpoints = append(checkpoints, entry2{pos: pos, cp: probe.Checkpoint})
		case probe.Items != nil || probe.Activities != nil:
			list := probe.Items
			if list == nil {
				list = probe.Activities
			}
			var items []v1alpha1.ActivityRecord
			if err := json.Unmarshal(*list, &items); err != nil {
				pos++
				report.Problems = append(report.Problems, Problem{Record: pos, Kind: Unreadable, Detail: err.Error()})
				continue
			}
			for i := range items {
				add(&items[i], probe.Activities != nil, false)
			}
			for _, c := range probe.Checkpoints {
				if c.Checkpoint != nil {
					pos++
					checkpoints = append(checkpoints, entry2{pos: pos, cp: c.Checkpoint})
				}
			}
		case probe.Type != "" || probe.Activity != nil:
			if probe.Type == "" {
				raw = *probe.Activity
			}
			rec, computed, err := lines.Restore(raw)
			if err != nil {
				pos++
				report.Problems = append(report.Problems, Problem{Record: pos, Kind: Unreadable, Detail: err.Error()})
				continue
			}
			add(rec, true, computed)
		default:
			pos++
			report.Problems = append(report.Problems, Problem{Record: pos, Kind: Unreadable,
				Detail: "neither an activity, a list of activities nor a checkpoint"})
		}
	}
	for _, id := range order {
		cr, problems := verifyChain(id, chains[id])
		report.Problems = append(report.Problems, problems...)
		report.Chains = append(report.Chains, cr)
	}
	verifyCheckpoints(report, chains, checkpoints, pub)
	return report, nil
}

type entry2 struct {
	pos int
	cp  *Checkpoint
}

// verifyChain checks one chain's records: hashes, order, links, gaps.
func verifyChain(id string, entries []entry) (ChainReport, []Problem) {
	cr := ChainReport{Chain: id}
	var problems []Problem
	flag := func(e entry, kind, detail string) {
		problems = append(problems, Problem{Record: e.pos, Chain: id, Seq: e.rec.Evidence.Seq, Kind: kind, Detail: detail})
	}
	// Hashes first: each record alone.
	for _, e := range entries {
		if got := string(Hash(nil, e.rec, CanonicalJSON)); got != e.rec.Evidence.Hash {
			flag(e, Altered, fmt.Sprintf("its content hashes to %s, its evidence says %s", short(got), short(e.rec.Evidence.Hash)))
		}
	}
	// Order: a record written after one with a higher sequence number, unless it repeats
	// one already seen (a redelivery).
	var high uint64
	seen := map[string]bool{}
	for _, e := range entries {
		if !e.ordered {
			continue
		}
		s := e.rec.Evidence.Seq
		if s < high && !seen[e.rec.Evidence.Hash] {
			flag(e, Reordered, fmt.Sprintf("comes after seq %d", high))
		}
		seen[e.rec.Evidence.Hash] = true
		high = max(high, s)
	}
	sorted := slices.Clone(entries)
	slices.SortStableFunc(sorted, func(a, b entry) int {
		return cmpUint(a.rec.Evidence.Seq, b.rec.Evidence.Seq)
	})
	var prev *entry
	for i := range sorted {
		e := sorted[i]
		ev := e.rec.Evidence
		if prev != nil && ev.Seq == prev.rec.Evidence.Seq {
			if ev.Hash == prev.rec.Evidence.Hash && ev.PrevHash == prev.rec.Evidence.PrevHash {
				cr.Duplicates++
			} else {
				flag(e, Conflict, fmt.Sprintf("record %d has the same sequence number and another hash", prev.pos))
			}
			continue
		}
		cr.Records++
		switch {
		case prev == nil:
			cr.First = ev.Seq
			if ev.Seq == 1 && ev.PrevHash != "" {
				flag(e, BrokenLink, "the first record of a chain names a predecessor")
			}
		case ev.Seq == prev.rec.Evidence.Seq+1:
			if ev.PrevHash != prev.rec.Evidence.Hash {
				flag(e, BrokenLink, fmt.Sprintf("its prevHash %s is not the hash of seq %d (%s)",
					short(ev.PrevHash), prev.rec.Evidence.Seq, short(prev.rec.Evidence.Hash)))
			}
		default:
			cr.Gaps = append(cr.Gaps, Gap{From: prev.rec.Evidence.Seq + 1, To: ev.Seq - 1, Linked: ev.PrevHash == prev.rec.Evidence.Hash})
		}
		cr.Last = ev.Seq
		prev = &sorted[i]
	}
	if cr.First > 1 {
		cr.Gaps = append([]Gap{{From: 1, To: cr.First - 1}}, cr.Gaps...)
	}
	return cr, problems
}

// verifyCheckpoints checks each checkpoint's signature and that the record it names is
// present with its hash; a chain without a valid checkpoint is unsigned.
func verifyCheckpoints(report *Report, chains map[string][]entry, cps []entry2, pub ed25519.PublicKey) {
	index := map[string]int{}
	for i, c := range report.Chains {
		index[c.Chain] = i
	}
	keyID := KeyID(pub)
	for _, e := range cps {
		c := e.cp
		if !c.Valid(pub) {
			detail := "the signature does not verify with the key"
			if c.Key != keyID {
				detail = fmt.Sprintf("signed by key %s, not by the given key %s", c.Key, keyID)
			}
			report.Problems = append(report.Problems, Problem{Record: e.pos, Chain: c.Chain, Seq: c.Seq, Kind: BadSignature, Detail: detail})
			continue
		}
		i, ok := index[c.Chain]
		if !ok {
			continue // a checkpoint of a chain none of whose records is here
		}
		cr := &report.Chains[i]
		cr.Checkpoints++
		var found *entry
		for i, a := range chains[c.Chain] {
			if a.rec.Evidence.Seq == c.Seq {
				found = &chains[c.Chain][i]
				break
			}
		}
		switch {
		case found == nil:
			// The signed record is missing: it shows as a gap; the checkpoint proves nothing here.
		case found.rec.Evidence.Hash != c.Hash:
			detail := fmt.Sprintf("signed hash %s, the record's is %s", short(c.Hash), short(found.rec.Evidence.Hash))
			if found.computed {
				// Compact lines carry no hash of their own that would name the record.
				detail += " (computed from the compact lines: a line since the last matching checkpoint was altered, inserted or removed)"
			}
			report.Problems = append(report.Problems, Problem{Record: e.pos, Chain: c.Chain, Seq: c.Seq, Kind: CheckpointMismatch, Detail: detail})
		case c.Seq > cr.Signed:
			cr.Signed = c.Seq
		}
	}
	for _, cr := range report.Chains {
		if cr.Signed == 0 {
			report.Problems = append(report.Problems, Problem{Chain: cr.Chain, Kind: Unsigned,
				Detail: fmt.Sprintf("no checkpoint signed by key %s covers a record of the chain", keyID)})
		}
	}
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// short cuts a hash for messages.
func short(h string) string {
	h = strings.TrimPrefix(h, HashPrefix)
	if len(h) > 12 {
		return h[:12]
	}
	if h == "" {
		return `""`
	}
	return h
}

// WriteReport prints r for people: each chain's verified range and gaps, then every
// problem.
func WriteReport(w io.Writer, r *Report) error {
	var b bytes.Buffer
	for _, c := range r.Chains {
		fmt.Fprintf(&b, "chain %s: records %d-%d (%d", c.Chain, c.First, c.Last, c.Records)
		if c.Duplicates > 0 {
			fmt.Fprintf(&b, ", %d duplicates", c.Duplicates)
		}
		fmt.Fprintf(&b, "), %d checkpoints", c.Checkpoints)
		if c.Signed > 0 {
			fmt.Fprintf(&b, ", signed up to %d", c.Signed)
			if c.Signed < c.Last {
				fmt.Fprintf(&b, " (%d-%d not yet signed)", c.Signed+1, c.Last)
			}
		}
		b.WriteByte('\n')
		for _, g := range c.Gaps {
			how := "missing: dropped, filtered or deleted after they were recorded"
			if g.Linked {
				how = "dropped where they were born (the register was full)"
			}
			if g.From == g.To {
				fmt.Fprintf(&b, "  gap: seq %d %s\n", g.From, how)
			} else {
				fmt.Fprintf(&b, "  gap: seq %d-%d (%d) %s\n", g.From, g.To, g.To-g.From+1, how)
			}
		}
	}
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "TAMPERED %s\n", p)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// ErrTampered is returned by callers that turn a report into an exit status.
var ErrTampered = errors.New("the activities were tampered with")
