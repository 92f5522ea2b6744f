package sink

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/evidence"
)

// Syslog severities (RFC 5424 §6.2.1): alerts are warnings, the rest informational.
const (
	severityWarning = 4
	severityInfo    = 6
)

// sdID is the structured-data id of Parley's parameters: name@PEN with 32473, the private
// enterprise number RFC 5612 reserves for documentation, until Parley has its own.
const sdID = "parley@32473"

// Syslog sends each activity as one syslog message over udp://, tcp:// (octet-counted
// framing, RFC 6587 §3.4.1) or tls:// (RFC 5425).
type Syslog struct {
	network, addr string
	format        v1alpha1.SyslogFormat
	facility      int
	hostname      string
	tls           *tls.Config
	conn          net.Conn
	buf           []byte
}

// NewSyslog sends to address (udp://, tcp:// or tls://host:port) in format (RFC5424 when
// empty) with facility (local0 when empty); tlsConfig verifies a tls:// server.
func NewSyslog(address string, format v1alpha1.SyslogFormat, facility string, tlsConfig *tls.Config) (*Syslog, error) {
	u, err := url.Parse(address)
	if err != nil {
		return nil, err
	}
	if format == "" {
		format = v1alpha1.SyslogRFC5424
	}
	if facility == "" {
		facility = "local0"
	}
	code, ok := Facilities[facility]
	if !ok {
		return nil, fmt.Errorf("syslog facility %q unknown", facility)
	}
	host, _ := os.Hostname()
	s := &Syslog{network: u.Scheme, addr: u.Host, format: format, facility: code, hostname: host, tls: tlsConfig}
	if s.hostname == "" {
		s.hostname = "-"
	}
	if s.network == "tls" && s.tls == nil {
		s.tls = &tls.Config{}
	}
	if s.tls != nil && s.tls.ServerName == "" {
		s.tls = s.tls.Clone()
		s.tls.ServerName, _, _ = net.SplitHostPort(u.Host)
	}
	return s, nil
}

// Deliver implements Destination: one write per batch on a stream, one datagram per
// activity on UDP. A failed write drops the connection; the retry dials again.
func (s *Syslog) Deliver(ctx context.Context, batch []Item) error {
	if s.conn == nil {
		var d net.Dialer
		var err error
		switch s.network {
		case "tls":
			td := tls.Dialer{NetDialer: &d, Config: s.tls}
			s.conn, err = td.DialContext(ctx, "tcp", s.addr)
		default:
			s.conn, err = d.DialContext(ctx, s.network, s.addr)
		}
		if err != nil {
			return fmt.Errorf("syslog: %w", err)
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.conn.SetWriteDeadline(dl)
	} else {
		_ = s.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	}
	// A receiver that stops reading blocks the write once the socket buffers are full:
	// the sink's Close must not wait for the deadline (Deliver returns when ctx ends).
	stop := wakeWhenDone(ctx, s.conn.SetWriteDeadline)
	defer stop()
	s.buf = s.buf[:0]
	for _, it := range batch {
		start := len(s.buf)
		msg := s.message(it)
		if s.network == "udp" {
			if _, err := s.conn.Write(msg); err != nil {
				return s.fail(err)
			}
			continue
		}
		s.buf = strconv.AppendInt(s.buf[:start], int64(len(msg)), 10)
		s.buf = append(s.buf, ' ')
		s.buf = append(s.buf, msg...)
	}
	if s.network != "udp" {
		if _, err := s.conn.Write(s.buf); err != nil {
			return s.fail(err)
		}
	}
	return nil
}

func (s *Syslog) fail(err error) error {
	s.conn.Close()
	s.conn = nil
	return fmt.Errorf("syslog: %w", err)
}

// Close implements Destination.
func (s *Syslog) Close() error {
	if s.conn != nil {
		return s.conn.Close()
	}
	return nil
}

func (s *Syslog) message(it Item) []byte {
	if cp := it.Checkpoint; cp != nil {
		// RFC 5424 only (TakesCheckpoints): MSGID Checkpoint, the text {"checkpoint": {...}}.
		body, _ := json.Marshal(evidence.CheckpointLine{Checkpoint: cp})
		t, _ := time.Parse(time.RFC3339Nano, cp.Time)
		params := [][2]string{{"key", it.Key}, {"connector", it.Connector}, {"checkpoint", "true"}}
		return RFC5424(s.facility, severityInfo, t, s.hostname, "Checkpoint", params, string(body))
	}
	if s.format == v1alpha1.SyslogCEF {
		return RFC5424(s.facility, severity(it.Record), it.Record.Time.Time, s.hostname, string(it.Record.Type), nil, CEF(it))
	}
	body := it.Raw
	if body == nil {
		body, _ = json.Marshal(it.Record)
	}
	params := [][2]string{{"key", it.Key}, {"connector", it.Record.Connector}, {"alert", strconv.FormatBool(it.Record.Alert)}}
	return RFC5424(s.facility, severity(it.Record), it.Record.Time.Time, s.hostname, string(it.Record.Type), params, string(body))
}

func severity(a *v1alpha1.ActivityRecord) int {
	if a.Alert {
		return severityWarning
	}
	return severityInfo
}

// RFC5424 is one syslog message (RFC 5424 §6): <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID
// MSGID [STRUCTURED-DATA] MSG, with APP-NAME parley, no PROCID, and the params (if any) as
// one SD-ELEMENT parley@32473.
func RFC5424(facility, severity int, t time.Time, hostname, msgID string, params [][2]string, msg string) []byte {
	b := make([]byte, 0, 128+len(msg))
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(facility*8+severity), 10)
	b = append(b, ">1 "...)
	if t.IsZero() {
		b = append(b, '-')
	} else {
		b = t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	}
	b = append(b, ' ')
	b = append(b, header(hostname, 255)...)
	b = append(b, " parley - "...)
	b = append(b, header(msgID, 32)...)
	b = append(b, ' ')
	if len(params) == 0 {
		b = append(b, '-')
	} else {
		b = append(b, '[')
		b = append(b, sdID...)
		for _, p := range params {
			b = append(b, ' ')
			b = append(b, p[0]...)
			b = append(b, '=', '"')
			b = append(b, sdEscape.Replace(p[1])...)
			b = append(b, '"')
		}
		b = append(b, ']')
	}
	if msg != "" {
		b = append(b, ' ')
		b = append(b, msg...)
	}
	return b
}

// header is a header field: printable US-ASCII without spaces, at most n characters, "-"
// when empty (RFC 5424 §6.2).
func header(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		if c := s[i]; c > 32 && c < 127 {
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// sdEscape escapes a PARAM-VALUE (RFC 5424 §6.3.3): '"', '\' and ']'.
var sdEscape = strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`)

// CEF is the activity in ArcSight's Common Event Format:
// CEF:0|Parley|Parley|v1alpha1|<type>|<name>|<severity>|<extension>.
func CEF(it Item) string {
	a := it.Activity()
	sev := "3"
	if a.Alert {
		sev = "8"
	}
	name := string(a.Type)
	if a.Alert {
		name += " alert"
	}
	var ext []string
	add := func(k, v string) {
		if v != "" {
			ext = append(ext, k+"="+cefValue.Replace(v))
		}
	}
	add("externalId", it.Key)
	add("cs1Label", "connector")
	add("cs1", a.Connector)
	if !a.Time.IsZero() {
		add("rt", strconv.FormatInt(a.Time.UnixMilli(), 10))
	}
	if c := a.Connection; c != nil {
		if host, port, err := net.SplitHostPort(c.Peer); err == nil {
			add("src", host)
			add("spt", port)
		}
		add("proto", string(c.Transport))
		add("cs2Label", "connection")
		add("cs2", c.ID)
	}
	if r := a.Rules; r != nil && len(r.Executed) > 0 {
		ids := make([]string, len(r.Executed))
		for i, id := range r.Executed {
			ids[i] = strconv.Itoa(int(id))
		}
		add("cs3Label", "rules")
		add("cs3", strings.Join(ids, " "))
	}
	if in := a.Input; in != nil {
		add("in", strconv.Itoa(int(in.Bytes)))
		add("request", in.Text)
	}
	add("msg", a.Message)
	return "CEF:0|Parley|Parley|v1alpha1|" + cefHeader.Replace(string(a.Type)) + "|" + cefHeader.Replace(name) + "|" + sev + "|" + strings.Join(ext, " ")
}

// CEF escapes: in header fields '\' and '|'; in extension values '\', '=' and line ends.
var (
	cefHeader = strings.NewReplacer(`\`, `\\`, `|`, `\|`)
	cefValue  = strings.NewReplacer(`\`, `\\`, `=`, `\=`, "\r", `\r`, "\n", `\n`)
)
