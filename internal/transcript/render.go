package transcript

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// Arrows mark who sent a payload: the peer (<<) or Parley (>>).
const (
	fromPeer   = "<<"
	fromParley = ">>"
)

// Write prints c as a dialogue. A header names the connector, the connection, the peer, the
// rules and the start; then each activity is a step: its offset from the start, its type and
// what it ran (rule ids, the basic rule, ALERT, captures, a new peer, the message), then
// what the peer sent (<<) and what Parley sent (>>), one line per line of text with \r, \n,
// \t, \\ and other invisible characters escaped, or as a hex dump when the payload is not
// text (a binary protocol, bytes the encoding could not decode).
func Write(w io.Writer, c *Conversation) error {
	bw := bufio.NewWriter(w)
	first := c.Steps[0]
	field := func(name, value string) { fmt.Fprintf(bw, "%-12s%s\n", name+":", value) }
	field("Connector", c.Connector)
	if c.Run != "" {
		field("Run", c.Run)
	}
	field("Connection", fmt.Sprintf("%s (%s)", c.ID, first.Connection.Transport))
	if s := session(c); s != "" {
		field("Session", s)
	}
	field("Peer", c.Peer())
	field("Rules", rulesRef(c))
	field("Started", c.Start().UTC().Format(timeLayout))
	bw.WriteByte('\n')

	offsets := make([]string, len(c.Steps))
	width := 0
	for i, s := range c.Steps {
		offsets[i] = fmt.Sprintf("+%.3fs", s.Time.Sub(c.Start()).Seconds())
		width = max(width, len(offsets[i]))
	}
	indent := strings.Repeat(" ", width+2)
	peer := c.Peer()
	for i, s := range c.Steps {
		fmt.Fprintf(bw, "%*s  %s", width, offsets[i], s.Type)
		for _, part := range stepParts(s, &peer) {
			bw.WriteString("  ")
			bw.WriteString(part)
		}
		bw.WriteByte('\n')
		var lines []string
		if in := s.Input; in != nil {
			lines = payload(fromPeer, in.Text, in.Base64, in.Bytes, in.Truncated)
		}
		if out := s.Output; out != nil && out.Bytes > 0 {
			lines = append(lines, payload(fromParley, out.Text, out.Base64, out.Bytes, out.Truncated)...)
		}
		for _, l := range lines {
			bw.WriteString(indent)
			bw.WriteString(l)
			bw.WriteByte('\n')
		}
	}
	switch c.Steps[len(c.Steps)-1].Type {
	case v1alpha1.ActivityEnded, v1alpha1.ActivityTimedOut, v1alpha1.ActivityBroken:
	default:
		bw.WriteString("(no end recorded: the conversation was still going on, or its end was not kept)\n")
	}
	return bw.Flush()
}

// stepParts describe what a step ran: the rules, ALERT, the captures, the peer when it
// changed (a socket joined, an async reply went to another socket), and the message.
func stepParts(s *v1alpha1.ActivityRecord, peer *string) []string {
	var parts []string
	if s.Alert {
		parts = append(parts, "ALERT")
	}
	if r := s.Rules; r != nil {
		// Greeted, TimedOut and Ended say themselves which basic rule they sent.
		if r.Basic != "" && s.Type != v1alpha1.ActivityGreeted && s.Type != v1alpha1.ActivityTimedOut && s.Type != v1alpha1.ActivityEnded {
			parts = append(parts, r.Basic)
		}
		if len(r.Executed) > 0 {
			parts = append(parts, idList("rule", r.Executed))
		}
		if len(r.Async) > 0 {
			parts = append(parts, idList("rule", r.Async))
		}
		if len(r.Scheduled) > 0 {
			parts = append(parts, "schedules "+joinIDs(r.Scheduled))
		}
		if s.Type == v1alpha1.ActivityInput && r.Basic == "" && len(r.Executed) == 0 {
			parts = append(parts, "no rule")
		}
	}
	for _, c := range s.Captures {
		parts = append(parts, c.Variable+"="+strconv.Quote(c.Value))
	}
	if s.Connection != nil && s.Connection.Peer != *peer {
		*peer = s.Connection.Peer
		parts = append(parts, "peer "+*peer)
	}
	if s.Message != "" {
		parts = append(parts, s.Message)
	}
	return parts
}

// idList is "rule 3" or "rules 3, 4".
func idList(noun string, ids []int32) string {
	if len(ids) > 1 {
		noun += "s"
	}
	return noun + " " + joinIDs(ids)
}

func joinIDs(ids []int32) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(int(id))
	}
	return strings.Join(s, ", ")
}

// payload is the lines of one input or output, each behind its arrow.
func payload(arrow, text, b64 string, n int32, truncated bool) []string {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		raw = nil
	}
	if truncated {
		text = trimCut(text)
	}
	var lines []string
	switch {
	case text == "" && len(raw) == 0:
		return []string{fmt.Sprintf("%s (%d bytes, not recorded)", arrow, n)}
	case readable(text) || len(raw) == 0:
		for text != "" {
			line, rest, _ := strings.Cut(text, "\n")
			if len(line) < len(text) {
				line += "\n"
			}
			lines = append(lines, arrow+" "+escape(line))
			text = rest
		}
	default:
		for _, l := range strings.Split(strings.TrimSuffix(hex.Dump(raw), "\n"), "\n") {
			lines = append(lines, arrow+" "+l)
		}
	}
	switch {
	case int(n) > len(raw) && len(raw) > 0:
		lines = append(lines, fmt.Sprintf("%s … %d more bytes not recorded", arrow, int(n)-len(raw)))
	case truncated:
		lines = append(lines, arrow+" … (filled maxInputSize)")
	}
	return lines
}

// trimCut drops from the end of a cut text the character the cut split, which decoded as
// U+FFFD (or stayed invalid UTF-8): it is not part of what was sent.
func trimCut(text string) string {
	for range utf8.UTFMax - 1 {
		r, size := utf8.DecodeLastRuneInString(text)
		if r != utf8.RuneError || size == 0 {
			break
		}
		text = text[:len(text)-size]
	}
	return text
}

// readable says whether text reads as text: printable characters, spaces and line breaks,
// nothing the encoding failed to decode.
func readable(text string) bool {
	for _, r := range text {
		switch {
		case r == '\r' || r == '\n' || r == '\t':
		case r == utf8.RuneError || !unicode.IsPrint(r):
			return false
		}
	}
	return true
}

// escape writes a line of text visibly: \r, \n, \t and \\ as in Go, other invisible
// characters as \xNN or \uNNNN, bytes that are not UTF-8 as \xNN.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\\':
			b.WriteString(`\\`)
		case unicode.IsPrint(r):
			b.WriteString(s[i : i+size])
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += size
	}
	return b.String()
}

// session is the conversation's last session id (operation.session), if any.
func session(c *Conversation) string {
	s := ""
	for _, st := range c.Steps {
		if st.Connection.Session != "" {
			s = st.Connection.Session
		}
	}
	return s
}

// rulesRef names the rules the conversation ran on.
func rulesRef(c *Conversation) string {
	for _, s := range c.Steps {
		if r := s.RulesRef; r != nil {
			out := r.Name
			if r.Generation != 0 {
				out += fmt.Sprintf(" generation %d", r.Generation)
			}
			return out + " " + r.Hash
		}
	}
	return "-"
}
