package evidence

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// LineReader restores the activities of an activity log written as compact lines (`parley
// run -o json`, --log-file; docs/evidence.md "Compact lines"): a line leaves out what the
// lines before it said, and the reader, reading the lines in the order written, puts it
// back, so that each record is the one that was recorded and hashes as it did. Whole lines
// (Activity objects, the engine's log, logs written before the compact form) pass
// unchanged. One log, one LineReader.
type LineReader struct {
	// chain, seq and hash are the evidence of the last activity line.
	chain, hash string
	seq         uint64
	rules       map[string]*v1alpha1.RulesRef
	conns       map[connKey]v1alpha1.ConnectionRef
}

type connKey struct{ connector, id string }

// NewLineReader starts reading a log.
func NewLineReader() *LineReader {
	return &LineReader{rules: map[string]*v1alpha1.RulesRef{}, conns: map[connKey]v1alpha1.ConnectionRef{}}
}

// EndsConnection says whether an activity of type t is the last of its connection: the
// writer of compact lines and LineReader both forget the connection after it.
func EndsConnection(t v1alpha1.ActivityType) bool {
	switch t {
	case v1alpha1.ActivityEnded, v1alpha1.ActivityBroken, v1alpha1.ActivityTimedOut, v1alpha1.ActivityRejected:
		return true
	}
	return false
}

// ErrMissingLine is the cause of a Restore error when a line refers to an earlier one that
// is not in the log (removed, or the log read from its middle).
var ErrMissingLine = errors.New("it leaves out what an earlier line said, and that line is missing")

// compactProbe tells the keys a compact line left out from those present and empty.
type compactProbe struct {
	Connection *struct {
		Peer      *string `json:"peer"`
		Transport *string `json:"transport"`
	} `json:"connection"`
	Input *struct {
		Base64 *string `json:"base64"`
		Bytes  *int32  `json:"bytes"`
	} `json:"input"`
	Output *struct {
		Base64 *string `json:"base64"`
		Bytes  *int32  `json:"bytes"`
	} `json:"output"`
	RulesRef json.RawMessage `json:"rulesRef"`
	Evidence *struct {
		Chain *string `json:"chain"`
	} `json:"evidence"`
}

// Restore reads one activity line and returns its record as recorded. computed says that
// its evidence hash was not in the line but computed (the line follows its predecessor):
// an alteration then shows at the next checkpoint, not as this record's hash.
func (r *LineReader) Restore(line []byte) (rec *v1alpha1.ActivityRecord, computed bool, err error) {
	rec = &v1alpha1.ActivityRecord{}
	if err := json.Unmarshal(line, rec); err != nil {
		return nil, false, err
	}
	var p compactProbe
	if err := json.Unmarshal(line, &p); err != nil {
		return nil, false, err
	}
	if c := rec.Connection; c != nil {
		k := connKey{rec.Connector, c.ID}
		switch {
		case p.Connection.Transport == nil && p.Connection.Peer == nil:
			// Lines written before the peer was kept on every line left it out too.
			last, ok := r.conns[k]
			if !ok {
				return nil, false, fmt.Errorf("connection %s without its peer: %w", c.ID, ErrMissingLine)
			}
			*c = last
		case p.Connection.Transport == nil:
			last, ok := r.conns[k]
			if !ok {
				return nil, false, fmt.Errorf("connection %s without its transport: %w", c.ID, ErrMissingLine)
			}
			c.Transport, c.Session = last.Transport, last.Session
			r.conns[k] = *c
		default:
			r.conns[k] = *c
		}
		if EndsConnection(rec.Type) {
			delete(r.conns, k)
		}
	}
	if in := rec.Input; in != nil && p.Input.Base64 == nil {
		in.Base64 = base64.StdEncoding.EncodeToString([]byte(in.Text))
		if p.Input.Bytes == nil {
			in.Bytes = int32(len(in.Text))
		}
	}
	if out := rec.Output; out != nil && p.Output.Base64 == nil {
		out.Base64 = base64.StdEncoding.EncodeToString([]byte(out.Text))
		if p.Output.Bytes == nil {
			out.Bytes = int32(len(out.Text))
		}
	}
	switch {
	case p.RulesRef == nil: // left out: the connector's last, if any
		if last := r.rules[rec.Connector]; last != nil {
			ref := *last
			rec.RulesRef = &ref
		}
	case rec.RulesRef == nil: // null: none, from here on too
		r.rules[rec.Connector] = nil
	default:
		ref := *rec.RulesRef
		r.rules[rec.Connector] = &ref
	}
	if e := rec.Evidence; e != nil {
		if p.Evidence.Chain == nil {
			if r.hash == "" {
				return nil, false, fmt.Errorf("evidence seq %d without its chain: %w", e.Seq, ErrMissingLine)
			}
			// A compact line follows its predecessor, the line before it. When that line
			// is not there (another seq), its hash is unknown: the record is restored
			// without one, shows after a gap its link does not bridge, and every hash
			// computed from it differs from the signed ones.
			e.Chain = r.chain
			if e.Seq == r.seq+1 {
				e.PrevHash = r.hash
			}
			e.Hash = string(Hash(nil, rec, CanonicalJSON))
			computed = true
		}
		r.chain, r.seq, r.hash = e.Chain, e.Seq, e.Hash
	}
	return rec, computed, nil
}
