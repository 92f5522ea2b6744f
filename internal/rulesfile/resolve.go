package rulesfile

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// This file reads scalars as sigs.k8s.io/yaml (and so kubectl) reads them: go.yaml.in/yaml/v2
// decoding into interface{}, YAML 1.1 rules. The node tree comes from yaml/v3, which resolves
// plain scalars by YAML 1.2 rules (`yes` is a string there); the decoder, not v3, is what
// decides what a document means, so its rules are repeated here.

type scalarKind int

const (
	kindString scalarKind = iota
	kindNull
	kindBool
	kindInt   // i, or u when unsigned is set (above math.MaxInt64)
	kindFloat // f
)

type scalar struct {
	kind     scalarKind
	b        bool
	i        int64
	u        uint64
	unsigned bool
	f        float64
	s        string // the text, for strings (and every kind, as written)
}

// yaml11 are the plain scalars YAML 1.1 reads as something other than a string, as
// go.yaml.in/yaml/v2's resolve table has them.
var yaml11 = map[string]scalar{}

// yaml11Words are the booleans of YAML 1.1 that YAML 1.2 (and most readers' intuition) take as
// words; true and false, whatever their case, mean what they say and are not among them.
var yaml11Words = map[string]bool{}

func init() {
	for _, w := range []string{"y", "Y", "yes", "Yes", "YES", "on", "On", "ON"} {
		yaml11[w] = scalar{kind: kindBool, b: true}
		yaml11Words[w] = true
	}
	for _, w := range []string{"n", "N", "no", "No", "NO", "off", "Off", "OFF"} {
		yaml11[w] = scalar{kind: kindBool, b: false}
		yaml11Words[w] = false
	}
	for _, w := range []string{"true", "True", "TRUE"} {
		yaml11[w] = scalar{kind: kindBool, b: true}
	}
	for _, w := range []string{"false", "False", "FALSE"} {
		yaml11[w] = scalar{kind: kindBool, b: false}
	}
	for _, w := range []string{"", "~", "null", "Null", "NULL"} {
		yaml11[w] = scalar{kind: kindNull}
	}
	for _, w := range []string{".nan", ".NaN", ".NAN"} {
		yaml11[w] = scalar{kind: kindFloat, f: math.NaN()}
	}
	for _, w := range []string{".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"} {
		yaml11[w] = scalar{kind: kindFloat, f: math.Inf(1)}
	}
	for _, w := range []string{"-.inf", "-.Inf", "-.INF"} {
		yaml11[w] = scalar{kind: kindFloat, f: math.Inf(-1)}
	}
}

var yamlStyleFloat = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`)

const (
	quotedStyles = yaml.SingleQuotedStyle | yaml.DoubleQuotedStyle | yaml.LiteralStyle | yaml.FoldedStyle
	strTag       = "!!str"
	binaryTag    = "!!binary"
)

// isPlain says the scalar is written without quotes, block style or tag: the ones YAML
// resolves by their text.
func isPlain(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Style&(quotedStyles|yaml.TaggedStyle) == 0
}

// resolve reads a scalar node as go.yaml.in/yaml/v2 decodes it into interface{}.
func resolve(n *yaml.Node) scalar {
	if n.Style&yaml.TaggedStyle != 0 {
		switch n.Tag {
		case strTag, binaryTag:
			return scalar{s: n.Value}
		case "!!bool", "!!int", "!!float", "!!null", "!!timestamp":
			// Resolved by the text, as below; a tag that disagrees makes the decoder fail,
			// which is left to it to report.
			return resolvePlain(n.Value)
		default:
			return scalar{s: n.Value} // an application tag: the text, as a string
		}
	}
	if n.Style&quotedStyles != 0 {
		return scalar{s: n.Value}
	}
	return resolvePlain(n.Value)
}

// resolvePlain is go.yaml.in/yaml/v2's resolve for an untagged plain scalar.
func resolvePlain(in string) scalar {
	if r, ok := yaml11[in]; ok {
		r.s = in
		return r
	}
	str := scalar{s: in}
	if in == "" {
		return str
	}
	switch c := in[0]; {
	case c == '.':
		if f, err := strconv.ParseFloat(in, 64); err == nil {
			return scalar{kind: kindFloat, f: f, s: in}
		}
	case c == '+' || c == '-' || c >= '0' && c <= '9':
		// A timestamp stays a string when decoded into interface{}.
		if isTimestamp(in) {
			return str
		}
		plain := strings.ReplaceAll(in, "_", "")
		if i, err := strconv.ParseInt(plain, 0, 64); err == nil {
			return scalar{kind: kindInt, i: i, s: in}
		}
		if u, err := strconv.ParseUint(plain, 0, 64); err == nil {
			return scalar{kind: kindInt, u: u, unsigned: true, s: in}
		}
		if yamlStyleFloat.MatchString(plain) {
			if f, err := strconv.ParseFloat(plain, 64); err == nil {
				return scalar{kind: kindFloat, f: f, s: in}
			}
		}
		if rest, ok := strings.CutPrefix(plain, "0b"); ok {
			if i, err := strconv.ParseInt(rest, 2, 64); err == nil {
				return scalar{kind: kindInt, i: i, s: in}
			}
			if u, err := strconv.ParseUint(rest, 2, 64); err == nil {
				return scalar{kind: kindInt, u: u, unsigned: true, s: in}
			}
		} else if rest, ok := strings.CutPrefix(plain, "-0b"); ok {
			if i, err := strconv.ParseInt("-"+rest, 2, 64); err == nil {
				return scalar{kind: kindInt, i: i, s: in}
			}
		}
	}
	return str
}

// isTimestamp is go.yaml.in/yaml/v2's parseTimestamp, without the time.
func isTimestamp(s string) bool {
	i := 0
	for ; i < len(s); i++ {
		if c := s[i]; c < '0' || c > '9' {
			break
		}
	}
	if i != 4 || i == len(s) || s[i] != '-' {
		return false
	}
	for _, format := range []string{
		"2006-1-2T15:4:5.999999999Z07:00",
		"2006-1-2t15:4:5.999999999Z07:00",
		"2006-1-2 15:4:5.999999999",
		"2006-1-2",
	} {
		if _, err := time.Parse(format, s); err == nil {
			return true
		}
	}
	return false
}

// text is the scalar as sigs.k8s.io/yaml writes it into a string field (or a JSON key).
func (s scalar) text() string {
	switch s.kind {
	case kindBool:
		return strconv.FormatBool(s.b)
	case kindInt:
		if s.unsigned {
			return strconv.FormatUint(s.u, 10)
		}
		return strconv.FormatInt(s.i, 10)
	case kindFloat:
		return strconv.FormatFloat(s.f, 'g', -1, 32)
	case kindNull:
		return ""
	}
	return s.s
}

// describe names what the scalar is, for messages.
func (s scalar) describe() string {
	switch s.kind {
	case kindNull:
		return "nothing (null)"
	case kindBool:
		if _, word := yaml11Words[s.s]; word {
			return fmt.Sprintf("%s (the boolean %t in YAML 1.1)", s.s, s.b)
		}
		return fmt.Sprintf("the boolean %t", s.b)
	case kindInt, kindFloat:
		return "the number " + s.s
	}
	return "the string " + quoteShort(s.s)
}

// quoteShort quotes a value for a message, cutting a long one.
func quoteShort(s string) string {
	const max = 40
	if r := []rune(s); len(r) > max {
		return strconv.Quote(string(r[:max])) + "…"
	}
	return strconv.Quote(s)
}
