package activity

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// JSONSink writes one JSON object per line with the Activity field names.
type JSONSink struct {
	w   io.Writer
	buf []byte
}

// NewJSONSink writes to w, one write per batch, so that a reader sees activities live.
func NewJSONSink(w io.Writer) *JSONSink { return &JSONSink{w: w} }

// Write implements Sink.
func (s *JSONSink) Write(batch []*v1alpha1.ActivityRecord) error {
	s.buf = s.buf[:0]
	for _, a := range batch {
		s.buf = AppendJSON(s.buf, a)
	}
	if _, err := s.w.Write(s.buf); err != nil {
		return fmt.Errorf("write activities: %w", err)
	}
	return nil
}

// DiscardSink counts activities without writing them (parley run -o none).
type DiscardSink struct{}

// Write implements Sink.
func (DiscardSink) Write([]*v1alpha1.ActivityRecord) error { return nil }

// TableSink prints activities as aligned columns for people watching a terminal.
type TableSink struct {
	w      *bufio.Writer
	header bool
}

// NewTableSink writes to w.
func NewTableSink(w io.Writer) *TableSink { return &TableSink{w: bufio.NewWriter(w)} }

const tableFormat = "%-15s %-16s %-9s %-22s %-14s %s\n"

// Write implements Sink.
func (s *TableSink) Write(batch []*v1alpha1.ActivityRecord) error {
	if !s.header {
		fmt.Fprintf(s.w, tableFormat, "TIME", "TYPE", "CONN", "PEER", "RULES", "DETAIL")
		s.header = true
	}
	for _, a := range batch {
		conn, peer := "-", "-"
		if a.Connection != nil {
			conn, peer = a.Connection.ID, a.Connection.Peer
		}
		fmt.Fprintf(s.w, tableFormat, a.Time.Format("15:04:05.000000"), typeColumn(a), conn, peer, rulesColumn(a.Rules), detail(a))
	}
	return s.w.Flush()
}

func typeColumn(a *v1alpha1.ActivityRecord) string {
	if a.Alert {
		return string(a.Type) + " !"
	}
	return string(a.Type)
}

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

// ShortInput is the input as one escaped line of at most n characters, for columns.
func ShortInput(in *v1alpha1.InputRecord, n int) string {
	if in == nil {
		return ""
	}
	q := strconv.Quote(in.Text)
	q = q[1 : len(q)-1]
	if len(q) > n {
		q = q[:n-1] + "…"
	}
	return q
}

func detail(a *v1alpha1.ActivityRecord) string {
	var parts []string
	if a.Input != nil {
		parts = append(parts, `in="`+ShortInput(a.Input, 48)+`"`)
	}
	if a.Output != nil && a.Output.Bytes > 0 {
		parts = append(parts, "out="+strconv.Itoa(int(a.Output.Bytes))+"B")
	}
	for _, c := range a.Captures {
		parts = append(parts, fmt.Sprintf("%s=%q", c.Variable, c.Value))
	}
	if a.Message != "" {
		parts = append(parts, a.Message)
	}
	return strings.Join(parts, " ")
}
