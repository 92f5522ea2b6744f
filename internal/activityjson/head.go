// Package activityjson reads the head of an activity's JSON as connectors send it: the few
// fields the engine acts on for an activity it does not write as an object, at a fraction of
// what decoding the whole with encoding/json costs (docs/performance.md §10).
package activityjson

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// activityKeys are the top-level keys of an ActivityRecord as the connector writes them
// (connector/activity.AppendJSON), each with its bit in the mask of keys seen.
var activityKeys = map[string]uint{
	"connector": 0, "time": 1, "type": 2, "connection": 3, "input": 4, "rules": 5, "output": 6,
	"captures": 7, "memory": 8, "rulesRef": 9, "alert": 10, "message": 11, "evidence": 12,
}

// DecodeHead reads from raw, one activity's JSON, the fields the engine acts on for an
// activity it does not write: connector, time, type, alert and evidence into h, and the
// number of rules fired (rules.executed and rules.async). It says false unless raw is in
// the connector's own form, so that these fields are exactly what encoding/json decodes:
// valid JSON and UTF-8 on one line; an object from its first byte to its last, whose keys are ActivityRecord's, each once and without
// escapes; a connector; strings read here without escapes. The caller then decodes raw
// with encoding/json, which refuses what is invalid. The fields not read are checked for
// nothing but being JSON: a destination that reads them decodes them itself.
func DecodeHead(raw []byte, h *v1alpha1.ActivityRecord) (fired int, ok bool) {
	// No line breaks (JSON has them only between tokens, which the connector does not
	// write): the sinks send raw as one line, as to a syslog file.
	if len(raw) < 2 || raw[0] != '{' || raw[len(raw)-1] != '}' || bytes.ContainsAny(raw, "\r\n") || !json.Valid(raw) || !utf8.Valid(raw) {
		return 0, false
	}
	s := scanner{b: raw}
	var seen uint
	ok = s.object(func(key []byte) bool {
		bit, known := activityKeys[string(key)]
		if !known || seen&(1<<bit) != 0 {
			return false
		}
		seen |= 1 << bit
		switch bit {
		case 0:
			v, ok := s.plainString()
			h.Connector = string(v)
			return ok && len(v) > 0 // the connector leaves out an empty one
		case 1:
			if s.null() {
				h.Time = metav1.MicroTime{}
				return true
			}
			v, ok := s.plainString()
			if !ok {
				return false
			}
			t, err := time.Parse(metav1.RFC3339Micro, string(v))
			h.Time = metav1.MicroTime{Time: t.Local()} // as MicroTime.UnmarshalJSON
			return err == nil
		case 2:
			v, ok := s.plainString()
			h.Type = v1alpha1.ActivityType(v)
			return ok
		case 5:
			n, ok := s.rulesFired()
			fired = n
			return ok
		case 10:
			return s.boolean(&h.Alert)
		case 12:
			return s.evidence(&h.Evidence)
		}
		s.skip()
		return true
	})
	return fired, ok && seen&1 != 0
}

// scanner walks JSON that json.Valid accepted.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// object calls field with each key of the object at s.i, s.i then at its value, which
// field consumes; false from field, or a value that is not an object, stops with false.
func (s *scanner) object(field func(key []byte) bool) bool {
	s.ws()
	if s.b[s.i] != '{' {
		return false
	}
	s.i++
	for {
		s.ws()
		switch s.b[s.i] {
		case '}':
			s.i++
			return true
		case ',':
			s.i++
			s.ws()
		}
		key, escaped := s.str()
		if escaped {
			return false
		}
		s.ws()
		s.i++ // ':'
		s.ws()
		if !field(key) {
			return false
		}
	}
}

// str reads the string at s.i: its bytes between the quotes, and whether it has escapes.
func (s *scanner) str() (content []byte, escaped bool) {
	s.i++
	start := s.i
	for {
		switch s.b[s.i] {
		case '"':
			content = s.b[start:s.i]
			s.i++
			return content, escaped
		case '\\':
			escaped = true
			s.i += 2
		default:
			s.i++
		}
	}
}

// plainString reads a string without escapes (false for anything else).
func (s *scanner) plainString() ([]byte, bool) {
	if s.b[s.i] != '"' {
		s.skip()
		return nil, false
	}
	v, escaped := s.str()
	return v, !escaped
}

func (s *scanner) null() bool {
	if bytes.HasPrefix(s.b[s.i:], []byte("null")) {
		s.i += 4
		return true
	}
	return false
}

func (s *scanner) boolean(v *bool) bool {
	switch {
	case bytes.HasPrefix(s.b[s.i:], []byte("true")):
		*v, s.i = true, s.i+4
	case bytes.HasPrefix(s.b[s.i:], []byte("false")):
		*v, s.i = false, s.i+5
	default:
		s.skip()
		return false
	}
	return true
}

// literal reads a number, true, false or null.
func (s *scanner) literal() []byte {
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return s.b[start:s.i]
		}
		s.i++
	}
	return s.b[start:s.i]
}

// skip passes over the value at s.i.
func (s *scanner) skip() {
	switch s.b[s.i] {
	case '"':
		s.str()
	case '{', '[':
		depth := 0
		for {
			switch s.b[s.i] {
			case '"':
				s.str()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			s.i++
			if depth == 0 {
				return
			}
		}
	default:
		s.literal()
	}
}

// evidence reads an EvidenceRecord, or null.
func (s *scanner) evidence(ev **v1alpha1.EvidenceRecord) bool {
	if s.null() {
		*ev = nil
		return true
	}
	e := &v1alpha1.EvidenceRecord{}
	*ev = e
	var seen uint
	return s.object(func(key []byte) bool {
		var bit uint
		switch string(key) {
		case "chain":
			bit = 0
		case "seq":
			bit = 1
		case "prevHash":
			bit = 2
		case "hash":
			bit = 3
		default:
			return false
		}
		if seen&(1<<bit) != 0 {
			return false
		}
		seen |= 1 << bit
		if bit == 1 {
			n, err := strconv.ParseUint(string(s.literal()), 10, 64)
			e.Seq = n
			return err == nil
		}
		v, ok := s.plainString()
		switch bit {
		case 0:
			e.Chain = string(v)
		case 2:
			e.PrevHash = string(v)
		case 3:
			e.Hash = string(v)
		}
		return ok
	})
}

// rulesFired counts the rules of a RulesRecord's executed and async lists (or null).
func (s *scanner) rulesFired() (int, bool) {
	if s.null() {
		return 0, true
	}
	n := 0
	var seen uint
	ok := s.object(func(key []byte) bool {
		var bit uint
		switch string(key) {
		case "executed":
			bit = 0
		case "async":
			bit = 1
		case "scheduled":
			bit = 2
		case "basic":
			bit = 3
		default:
			return false
		}
		if seen&(1<<bit) != 0 {
			return false
		}
		seen |= 1 << bit
		if bit >= 2 {
			s.skip()
			return true
		}
		c, ok := s.int32s()
		n += c
		return ok
	})
	return n, ok
}

// int32s counts the elements of a list of int32 numbers, or null.
func (s *scanner) int32s() (int, bool) {
	if s.null() {
		return 0, true
	}
	if s.b[s.i] != '[' {
		s.skip()
		return 0, false
	}
	s.i++
	n := 0
	for {
		s.ws()
		switch s.b[s.i] {
		case ']':
			s.i++
			return n, true
		case ',':
			s.i++
			s.ws()
		}
		if _, err := strconv.ParseInt(string(s.literal()), 10, 32); err != nil {
			return n, false
		}
		n++
	}
}
