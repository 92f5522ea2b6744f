package activity

import (
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/evidence"
)

// Compactor remembers what the lines of one output already said, so that a line leaves it
// out: the compact lines of docs/evidence.md ("Compact lines"), which `parley run` writes
// and evidence.LineReader restores to the records they were, hashes and all. One output,
// one Compactor, used from one goroutine.
type Compactor struct {
	// chain, seq and hash are the evidence of the last line written.
	chain, hash string
	seq         uint64
	// rules is the rulesRef last written for each connector (nil: none, written as null).
	// Of a connector not in it, a reader may remember anything (an earlier run appended to
	// the same file, a failed write): its next line says which.
	rules map[string]*v1alpha1.RulesRef
	// conns is each live connection's peer, transport and session as last written.
	conns   map[connKey]v1alpha1.ConnectionRef
	scratch []byte
}

type connKey struct{ connector, id string }

// maxCompactConnections bounds what a Compactor remembers of connections whose end it has
// not seen (their end activity dropped, or never recorded): at the bound it forgets them
// all, and each writes its peer again on its next line.
const maxCompactConnections = 1 << 14

// NewCompactor starts an output: its first line of each kind is written whole.
func NewCompactor() *Compactor {
	return &Compactor{rules: map[string]*v1alpha1.RulesRef{}, conns: map[connKey]v1alpha1.ConnectionRef{}}
}

// Reset forgets what was written: after a failed write, whose lines a reader may not have,
// the next lines say again what they would leave out.
func (c *Compactor) Reset() { *c = *NewCompactor() }

// Append appends a's compact line and a newline.
func (c *Compactor) Append(dst []byte, a *v1alpha1.ActivityRecord) []byte {
	dst = appendRecord(dst, a, c, escapedInvalid)
	if a.Connection != nil && evidence.EndsConnection(a.Type) {
		delete(c.conns, connKey{a.Connector, a.Connection.ID})
	}
	return dst
}

// follows says whether e directly follows the last line's evidence (same chain, the next
// number, prevHash its hash), and makes e the last. After a gap (activities the register
// dropped) the line is whole, so that a compact line missing before another shows.
func (c *Compactor) follows(e *v1alpha1.EvidenceRecord) bool {
	ok := c.hash != "" && e.Chain == c.chain && e.Seq == c.seq+1 && e.PrevHash == c.hash
	c.chain, c.seq, c.hash = e.Chain, e.Seq, e.Hash
	return ok
}

// knownRulesRef says whether r (nil: none) is the connector's rulesRef as a reader of the
// lines so far knows it, and remembers it when not: the line then says it, or null.
func (c *Compactor) knownRulesRef(connector string, r *v1alpha1.RulesRef) bool {
	last, ok := c.rules[connector]
	if ok && (last == r || last != nil && r != nil && *last == *r) {
		return true
	}
	if r != nil {
		ref := *r
		r = &ref
	}
	c.rules[connector] = r
	return false
}

// knownConnection says whether conn's peer, transport and session are as last written for
// its id, and remembers them when not: a compact line then leaves out the transport and
// session (the peer is on every line).
func (c *Compactor) knownConnection(connector string, conn *v1alpha1.ConnectionRef) bool {
	k := connKey{connector, conn.ID}
	if last, ok := c.conns[k]; ok && last == *conn {
		return true
	}
	if len(c.conns) >= maxCompactConnections {
		clear(c.conns)
	}
	c.conns[k] = *conn
	return false
}

// impliedBase64 says whether b64 is the base64 of text's bytes, and text reads back as
// those bytes (valid UTF-8): a reader then restores b64 from the text.
func (c *Compactor) impliedBase64(text, b64 string) bool {
	if len(b64) != base64.StdEncoding.EncodedLen(len(text)) || !utf8.ValidString(text) {
		return false
	}
	n := len(text) + len(b64)
	c.scratch = slices.Grow(c.scratch[:0], n)[:n]
	copy(c.scratch, text)
	base64.StdEncoding.Encode(c.scratch[len(text):], c.scratch[:len(text)])
	return string(c.scratch[len(text):]) == b64
}

// impliedBytes says whether an input's or output's byte count is the length of its text,
// which then holds every byte (its base64 is implied too): a compact line leaves it out.
func impliedBytes(text string, n int32, truncated bool) bool {
	return !truncated && int(n) == len(text)
}

// CompactJSONSink writes compact JSON lines (docs/evidence.md): `parley run -o json` and
// --log-file. Like JSONSink, one write per batch or per jsonChunk of it.
type CompactJSONSink struct {
	w   io.Writer
	buf []byte
	c   *Compactor
}

// NewCompactJSONSink writes to w, an output of its own: its first lines are whole.
func NewCompactJSONSink(w io.Writer) *CompactJSONSink {
	return &CompactJSONSink{w: w, c: NewCompactor()}
}

// Write implements Sink.
func (s *CompactJSONSink) Write(batch []*v1alpha1.ActivityRecord) error {
	s.buf = s.buf[:0]
	for i, a := range batch {
		s.buf = s.c.Append(s.buf, a)
		if len(s.buf) >= jsonChunk || i == len(batch)-1 {
			if _, err := s.w.Write(s.buf); err != nil {
				s.c.Reset() // a reader may lack these lines: the next ones are whole
				return fmt.Errorf("write activities: %w", err)
			}
			s.buf = s.buf[:0]
		}
	}
	if cap(s.buf) > keepBuffer {
		s.buf = nil
	}
	return nil
}
