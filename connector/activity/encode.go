package activity

import (
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// rfc3339Micro is metav1.MicroTime's JSON layout.
const rfc3339Micro = "2006-01-02T15:04:05.000000Z07:00"

// appendMicroTime appends t in UTC as metav1.MicroTime's JSON does (rfc3339Micro), byte for
// byte. Every activity's time is formatted twice (its evidence hash, its line), and the
// general layout interpreter of time.AppendFormat was most of the encoding's time beside the
// strings; years it cannot write in four digits go to it.
func appendMicroTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, rfc3339Micro)
	}
	hour, minute, sec := t.Clock()
	dst = appendDigits(dst, year, 4)
	dst = append(dst, '-')
	dst = appendDigits(dst, int(month), 2)
	dst = append(dst, '-')
	dst = appendDigits(dst, day, 2)
	dst = append(dst, 'T')
	dst = appendDigits(dst, hour, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, minute, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, sec, 2)
	dst = append(dst, '.')
	dst = appendDigits(dst, t.Nanosecond()/1000, 6)
	return append(dst, 'Z')
}

// appendDigits appends the width last decimal digits of n (n ≥ 0), zero-padded.
func appendDigits(dst []byte, n, width int) []byte {
	dst = append(dst, make([]byte, width)...)
	for i := len(dst) - 1; i >= len(dst)-width; i-- {
		dst[i] = byte('0' + n%10)
		n /= 10
	}
	return dst
}

// AppendJSON appends a as encoding/json would marshal it (without HTML escaping), byte for
// byte, and a newline. Activities are encoded on the sink's goroutine for every input a
// connector sees; reflection costs several times this hand-written walk. The equivalence
// with encoding/json is checked by TestAppendJSONMatchesEncodingJSON and FuzzAppendJSON.
func AppendJSON(dst []byte, a *v1alpha1.ActivityRecord) []byte {
	return appendRecord(dst, a, nil, escapedInvalid)
}

// AppendCanonicalJSON appends the canonical encoding an activity's hash is taken of
// (evidence.Encoder): AppendJSON of a as a JSON reader reads it back, each invalid UTF-8
// byte of a string written as the character U+FFFD rather than as the escape \ufffd, in
// the same pass. A peer sending random bytes makes most of a busy connector's inputs
// invalid UTF-8, and copying each record to make its strings valid first cost more than its
// hash (docs/performance.md §1). The equivalence with evidence.CanonicalJSON, and with the
// hash of the record read back, is checked by FuzzAppendJSON.
func AppendCanonicalJSON(dst []byte, a *v1alpha1.ActivityRecord) []byte {
	return appendRecord(dst, a, nil, string(utf8.RuneError))
}

// How a string's invalid UTF-8 bytes are written: as encoding/json writes them (JSON lines),
// or as the character they read back as (the canonical encoding).
const escapedInvalid = `\ufffd`

// appendRecord is AppendJSON, or with c the compact line of docs/evidence.md: the parts c
// says the lines before already gave are left out. Each invalid UTF-8 byte of a string is
// written as invalid.
func appendRecord(dst []byte, a *v1alpha1.ActivityRecord, c *Compactor, invalid string) []byte {
	dst = append(dst, '{')
	if a.Connector != "" {
		dst = appendKey(dst, "connector", true)
		dst = appendString(dst, a.Connector, invalid)
	}
	dst = appendKey(dst, "time", a.Connector == "")
	if a.Time.IsZero() {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '"')
		dst = appendMicroTime(dst, a.Time.Time)
		dst = append(dst, '"')
	}
	dst = appendKey(dst, "type", false)
	dst = appendString(dst, string(a.Type), invalid)
	if conn := a.Connection; conn != nil {
		dst = appendKey(dst, "connection", false)
		dst = append(dst, `{"id":`...)
		dst = appendString(dst, conn.ID, invalid)
		// The peer is on every line, compact or not: a line read alone (a log shipper's
		// event in a SIEM) says who did what.
		dst = appendKey(dst, "peer", false)
		dst = appendString(dst, conn.Peer, invalid)
		if c == nil || !c.knownConnection(a.Connector, conn) {
			dst = appendKey(dst, "transport", false)
			dst = appendString(dst, string(conn.Transport), invalid)
			if conn.Session != "" {
				dst = appendKey(dst, "session", false)
				dst = appendString(dst, conn.Session, invalid)
			}
		}
		dst = append(dst, '}')
	}
	if in := a.Input; in != nil {
		dst = appendKey(dst, "input", false)
		dst = append(dst, `{"text":`...)
		dst = appendString(dst, in.Text, invalid)
		implied := c != nil && c.impliedBase64(in.Text, in.Base64)
		if !implied {
			dst = appendKey(dst, "base64", false)
			dst = appendString(dst, in.Base64, invalid)
		}
		if !implied || !impliedBytes(in.Text, in.Bytes, in.Truncated) {
			dst = appendKey(dst, "bytes", false)
			dst = strconv.AppendInt(dst, int64(in.Bytes), 10)
		}
		if in.Truncated {
			dst = append(dst, `,"truncated":true`...)
		}
		if in.Preview != "" {
			dst = appendKey(dst, "preview", false)
			dst = appendString(dst, in.Preview, invalid)
		}
		dst = append(dst, '}')
	}
	if r := a.Rules; r != nil {
		dst = appendKey(dst, "rules", false)
		first := true
		dst = append(dst, '{')
		for _, f := range []struct {
			name string
			ids  []int32
		}{{"executed", r.Executed}, {"async", r.Async}, {"scheduled", r.Scheduled}} {
			if len(f.ids) > 0 {
				dst = appendKey(dst, f.name, first)
				first = false
				dst = appendIDs(dst, f.ids)
			}
		}
		if r.Basic != "" {
			dst = appendKey(dst, "basic", first)
			dst = appendString(dst, r.Basic, invalid)
		}
		dst = append(dst, '}')
	}
	if o := a.Output; o != nil {
		dst = appendKey(dst, "output", false)
		implied := c != nil && c.impliedBase64(o.Text, o.Base64)
		if implied && impliedBytes(o.Text, o.Bytes, o.Truncated) {
			// Compact, and the text is every byte sent: a reader restores base64 and bytes.
			dst = append(dst, `{"text":`...)
			dst = appendString(dst, o.Text, invalid)
		} else {
			dst = append(dst, `{"bytes":`...)
			dst = strconv.AppendInt(dst, int64(o.Bytes), 10)
			if o.Text != "" {
				dst = appendKey(dst, "text", false)
				dst = appendString(dst, o.Text, invalid)
			}
		}
		if c != nil {
			// Compact: left out when it is the text's bytes, so written even when empty.
			if !implied {
				dst = appendKey(dst, "base64", false)
				dst = appendString(dst, o.Base64, invalid)
			}
		} else if o.Base64 != "" {
			dst = appendKey(dst, "base64", false)
			dst = appendString(dst, o.Base64, invalid)
		}
		if o.Truncated {
			dst = append(dst, `,"truncated":true`...)
		}
		dst = append(dst, '}')
	}
	if len(a.Captures) > 0 {
		dst = appendKey(dst, "captures", false)
		dst = append(dst, '[')
		for i, c := range a.Captures {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"rule":`...)
			dst = strconv.AppendInt(dst, int64(c.Rule), 10)
			dst = appendKey(dst, "variable", false)
			dst = appendString(dst, c.Variable, invalid)
			dst = appendKey(dst, "value", false)
			dst = appendString(dst, c.Value, invalid)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	if m := a.Memory; m != nil {
		dst = appendKey(dst, "memory", false)
		dst = append(dst, '{')
		if len(m.Connection) > 0 {
			dst = appendKey(dst, "connection", true)
			dst = appendMap(dst, m.Connection, invalid)
		}
		if len(m.Global) > 0 {
			dst = appendKey(dst, "global", len(m.Connection) == 0)
			dst = appendMap(dst, m.Global, invalid)
		}
		dst = append(dst, '}')
	}
	if c != nil && c.knownRulesRef(a.Connector, a.RulesRef) {
		// Compact: the connector's rulesRef as last written, left out.
	} else if r := a.RulesRef; r == nil {
		if c != nil {
			dst = append(dst, `,"rulesRef":null`...) // none, not the one a reader knows
		}
	} else {
		dst = appendKey(dst, "rulesRef", false)
		dst = append(dst, `{"name":`...)
		dst = appendString(dst, r.Name, invalid)
		if r.Generation != 0 {
			dst = appendKey(dst, "generation", false)
			dst = strconv.AppendInt(dst, r.Generation, 10)
		}
		dst = appendKey(dst, "hash", false)
		dst = appendString(dst, r.Hash, invalid)
		dst = append(dst, '}')
	}
	if a.Alert {
		dst = append(dst, `,"alert":true`...)
	}
	if a.Message != "" {
		dst = appendKey(dst, "message", false)
		dst = appendString(dst, a.Message, invalid)
	}
	if e := a.Evidence; e != nil && c != nil && c.follows(e) {
		// Compact: the chain and prevHash are the previous line's, the hash is computed.
		dst = append(dst, `,"evidence":{"seq":`...)
		dst = strconv.AppendUint(dst, e.Seq, 10)
		dst = append(dst, '}')
	} else if e != nil {
		dst = appendKey(dst, "evidence", false)
		dst = append(dst, `{"chain":`...)
		dst = appendString(dst, e.Chain, invalid)
		dst = append(dst, `,"seq":`...)
		dst = strconv.AppendUint(dst, e.Seq, 10)
		if e.PrevHash != "" {
			dst = appendKey(dst, "prevHash", false)
			dst = appendString(dst, e.PrevHash, invalid)
		}
		dst = appendKey(dst, "hash", false)
		dst = appendString(dst, e.Hash, invalid)
		dst = append(dst, '}')
	}
	return append(dst, '}', '\n')
}

func appendKey(dst []byte, key string, first bool) []byte {
	if !first {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, key...)
	return append(dst, '"', ':')
}

func appendIDs(dst []byte, ids []int32) []byte {
	dst = append(dst, '[')
	for i, id := range ids {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, int64(id), 10)
	}
	return append(dst, ']')
}

// appendMap writes a string map with sorted keys, as encoding/json does.
func appendMap(dst []byte, m map[string]string, invalid string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k, invalid)
		dst = append(dst, ':')
		dst = appendString(dst, m[k], invalid)
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as encoding/json does with HTML escaping off: \b \f \n \r \t and
// other control bytes escaped, U+2028 and U+2029 escaped, and each invalid UTF-8 byte
// written as invalid (encoding/json's \ufffd: escapedInvalid).
func appendString(dst []byte, s, invalid string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, invalid...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
