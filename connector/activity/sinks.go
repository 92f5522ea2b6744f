package activity

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// JSONSink writes one JSON object per line with the Activity field names.
type JSONSink struct {
	w   io.Writer
	buf []byte
}

// jsonChunk is how much encoded JSON the sink gathers before it writes: a batch of small
// activities is one write, and a batch of large inputs (up to MaxBatch of maxInputSize
// each, text and base64) is never encoded whole, a third copy of the bytes the register
// holds. keepBuffer is the most the sink keeps between batches.
const (
	jsonChunk  = 256 << 10
	keepBuffer = 1 << 20
)

// NewJSONSink writes to w, one write per batch (or per jsonChunk of it), so that a reader
// sees activities live.
func NewJSONSink(w io.Writer) *JSONSink { return &JSONSink{w: w} }

// Write implements Sink.
func (s *JSONSink) Write(batch []*v1alpha1.ActivityRecord) error {
	s.buf = s.buf[:0]
	for i, a := range batch {
		s.buf = AppendJSON(s.buf, a)
		if len(s.buf) >= jsonChunk || i == len(batch)-1 {
			if _, err := s.w.Write(s.buf); err != nil {
				return fmt.Errorf("write activities: %w", err)
			}
			s.buf = s.buf[:0]
		}
	}
	if cap(s.buf) > keepBuffer {
		s.buf = nil // one large input grew it: do not hold its size for the run's life
	}
	return nil
}

// DiscardSink counts activities without writing them (parley run -o none).
type DiscardSink struct{}

// Write implements Sink.
func (DiscardSink) Write([]*v1alpha1.ActivityRecord) error { return nil }

// ReadsEvidence implements EvidenceReader: nothing is written, so nothing shows a hash.
func (DiscardSink) ReadsEvidence() bool { return false }

// TableOptions shape a TableSink.
type TableOptions struct {
	// ConnectorColumn adds a CONNECTOR column, for a table that several connectors share
	// (each numbers its conversations from c-000001).
	ConnectorColumn bool
	// Binary names the connectors whose rules read bytes (operation.encoding: binary): their
	// inputs that hold more than printable ASCII and line ends show as hex rather than as
	// one character per byte.
	Binary map[string]bool
	// Color marks alert rows in colour, for a terminal (and a user who did not set NO_COLOR).
	Color bool
}

// TableSink prints activities as aligned columns for people watching a terminal. Columns:
// TIME, TYPE ("!" marks an alert), CONNECTOR (with several), CONN, PEER, RULES, DETAIL;
// docs/rules.md §10 explains the RULES notation.
type TableSink struct {
	w      *bufio.Writer
	o      TableOptions
	header bool
	// memory is each live conversation's memory as its last row had it: a row shows only
	// the variables that changed, so that reportMemory does not drown the table.
	memory map[memoryKey]*v1alpha1.MemorySnapshot
}

type memoryKey struct{ connector, connection string }

// NewTableSink writes to w.
func NewTableSink(w io.Writer, o TableOptions) *TableSink {
	return &TableSink{w: bufio.NewWriter(w), o: o, memory: map[memoryKey]*v1alpha1.MemorySnapshot{}}
}

// inputWidth bounds the input shown in DETAIL, escaped.
const inputWidth = 48

// Colours of alert rows (ANSI SGR): bold red, then reset.
const (
	alertStart = "\x1b[1;31m"
	alertEnd   = "\x1b[0m"
)

// ReadsEvidence implements EvidenceReader: the table shows no hashes.
func (s *TableSink) ReadsEvidence() bool { return false }

// Write implements Sink.
func (s *TableSink) Write(batch []*v1alpha1.ActivityRecord) error {
	if !s.header {
		s.row(false, "TIME", "TYPE", "CONNECTOR", "CONN", "PEER", "RULES", "DETAIL")
		s.header = true
	}
	for _, a := range batch {
		conn, peer := "-", "-"
		if a.Connection != nil {
			conn, peer = a.Connection.ID, a.Connection.Peer
		}
		connector := a.Connector
		if connector == "" {
			connector = "-"
		}
		s.row(a.Alert && s.o.Color, a.Time.Format("15:04:05.000000"), typeColumn(a), connector, conn, peer,
			rulesColumn(a.Rules), s.detail(a))
	}
	return s.w.Flush()
}

func (s *TableSink) row(alert bool, time, typ, connector, conn, peer, rules, detail string) {
	if alert {
		s.w.WriteString(alertStart)
	}
	fmt.Fprintf(s.w, "%-15s %-16s ", time, typ)
	if s.o.ConnectorColumn {
		fmt.Fprintf(s.w, "%-16s ", connector)
	}
	fmt.Fprintf(s.w, "%-9s %-22s %-14s %s", conn, peer, rules, detail)
	if alert {
		s.w.WriteString(alertEnd)
	}
	s.w.WriteByte('\n')
}

func typeColumn(a *v1alpha1.ActivityRecord) string {
	if a.Alert {
		return string(a.Type) + " !"
	}
	return string(a.Type)
}

// rulesColumn: "default" (a basic rule), "1 2" (custom rules fired), "a7" (async rule 7
// ran), "→5,6" (rules 5 and 6 scheduled).
func rulesColumn(r *v1alpha1.RulesRecord) string {
	if r == nil {
		return "-"
	}
	var parts []string
	if r.Basic != "" {
		parts = append(parts, r.Basic)
	}
	for _, id := range r.Executed {
		parts = append(parts, strconv.Itoa(int(id)))
	}
	for _, id := range r.Async {
		parts = append(parts, "a"+strconv.Itoa(int(id)))
	}
	if len(r.Scheduled) > 0 {
		ids := make([]string, len(r.Scheduled))
		for i, id := range r.Scheduled {
			ids[i] = strconv.Itoa(int(id))
		}
		parts = append(parts, "→"+strings.Join(ids, ","))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// ShortInput is the input as one escaped line (as strconv.Quote escapes it) of at most n
// bytes: an ellipsis ends it when it was cut, and a cut never splits a character or an
// escape.
func ShortInput(in *v1alpha1.InputRecord, n int) string {
	if in == nil {
		return ""
	}
	q := strconv.Quote(in.Text)
	q = q[1 : len(q)-1]
	if len(q) <= n {
		return q
	}
	// Cut after the last whole escaped character that leaves room for the ellipsis.
	var b strings.Builder
	text := in.Text
	for i := 0; i < len(text); {
		_, size := utf8.DecodeRuneInString(text[i:])
		piece := strconv.Quote(text[i : i+size])
		piece = piece[1 : len(piece)-1]
		if b.Len()+len(piece) > n-len("…") {
			break
		}
		b.WriteString(piece)
		i += size
	}
	return b.String() + "…"
}

// printable says whether a binary input reads as text: printable ASCII, tabs and line ends
// (Redis's RESP, SMTP), so that only inputs with other bytes show as hex.
func printable(text string) bool {
	for i := 0; i < len(text); i++ {
		if c := text[i]; (c < 0x20 || c > 0x7e) && c != '\r' && c != '\n' && c != '\t' {
			return false
		}
	}
	return true
}

// hexInput is the input's bytes in hex, at most n characters, an ellipsis ending it when cut.
// An input without base64 holds its bytes as its text (utf-8, which the register leaves so
// for the table: EvidenceReader): a connector whose rules were reloaded from binary to
// utf-8 sends such inputs to a table still set to show it in hex.
func hexInput(in *v1alpha1.InputRecord, n int) string {
	var raw []byte
	if in.Base64 == "" {
		raw = []byte(in.Text[:min(len(in.Text), n/2+1)]) // enough to show, and to tell that it was cut
	} else {
		var err error
		if raw, err = base64.StdEncoding.DecodeString(in.Base64); err != nil {
			return ShortInput(in, n)
		}
	}
	max := (n - len("…")) / 2
	if len(raw) <= n/2 {
		return hex.EncodeToString(raw)
	}
	return hex.EncodeToString(raw[:max]) + "…"
}

func (s *TableSink) detail(a *v1alpha1.ActivityRecord) string {
	var parts []string
	if a.Input != nil {
		if s.o.Binary[a.Connector] && !printable(a.Input.Text) {
			parts = append(parts, "in=hex:"+hexInput(a.Input, inputWidth))
		} else {
			parts = append(parts, `in="`+ShortInput(a.Input, inputWidth)+`"`)
		}
	}
	if a.Output != nil && a.Output.Bytes > 0 {
		parts = append(parts, "out="+strconv.Itoa(int(a.Output.Bytes))+"B")
	}
	for _, c := range a.Captures {
		parts = append(parts, fmt.Sprintf("%s=%q", c.Variable, c.Value))
	}
	if m := a.Memory; m != nil && len(m.Connection)+len(m.Global) > 0 {
		key := memoryKey{a.Connector, ""}
		if a.Connection != nil {
			key.connection = a.Connection.ID
		}
		last := s.memory[key]
		if changed := memoryList(m, last); changed != "" {
			parts = append(parts, "memory{"+changed+"}")
		}
		s.memory[key] = m
		if a.Type == v1alpha1.ActivityEnded || a.Type == v1alpha1.ActivityTimedOut || a.Type == v1alpha1.ActivityBroken {
			delete(s.memory, key)
		}
	}
	if a.Message != "" {
		parts = append(parts, a.Message)
	}
	return strings.Join(parts, " ")
}

// memoryList is the reported variables as name=value, connection scope first, each scope
// in name order: those that differ from last, or all without last.
func memoryList(m, last *v1alpha1.MemorySnapshot) string {
	var parts []string
	var before [2]map[string]string
	if last != nil {
		before = [2]map[string]string{last.Connection, last.Global}
	}
	for i, scope := range []map[string]string{m.Connection, m.Global} {
		for _, name := range slices.Sorted(maps.Keys(scope)) {
			if old, ok := before[i][name]; last != nil && ok && old == scope[name] {
				continue
			}
			parts = append(parts, name+"="+strconv.Quote(scope[name]))
		}
	}
	return strings.Join(parts, " ")
}

// MultiSink writes each batch to every sink in turn (`parley run --log-file`: the table on
// the terminal, JSON lines in a file). A failing sink does not keep the others from theirs.
type MultiSink []Sink

// ReadsEvidence implements EvidenceReader: the evidence is sealed if any sink reads it.
func (m MultiSink) ReadsEvidence() bool {
	for _, s := range m {
		if ReadsEvidence(s) {
			return true
		}
	}
	return false
}

// Write implements Sink.
func (m MultiSink) Write(batch []*v1alpha1.ActivityRecord) error {
	var errs []error
	for _, s := range m {
		if err := s.Write(batch); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
