package lope

import (
	"encoding/base64"
	"regexp"
	"strings"

	"github.com/parley-dev/parley/rules"
)

// text converts a reply (a response or a basic rule's value), plain or base64, checking its
// {{name}} templates against the declared variables. ok is false when base64 is invalid.
//
// Lope writes the text "None" for a name it does not know; Parley refuses such rules, so the
// converted reply carries "None" literally, which sends what Lope sent.
func (c *converter) text(path, s string, b64 bool) (string, bool) {
	plain := s
	if b64 {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
		if err != nil {
			return "", false
		}
		plain = c.codec.Decode(raw)
	}
	fixed := c.templates(path, plain)
	switch {
	case fixed == plain:
		return s, true
	case b64:
		return base64.StdEncoding.EncodeToString(c.codec.AppendEncode(nil, fixed)), true
	}
	return fixed, true
}

// templates rewrites the placeholders Parley would refuse. It finds them as Parley's
// template parser does: `{{`, an identifier with optional spaces, `}}`.
func (c *converter) templates(path, s string) string {
	var b strings.Builder
	rest := s
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			break
		}
		j := strings.Index(rest[i+2:], "}}")
		if j < 0 {
			break
		}
		inner := rest[i+2 : i+2+j]
		if !variableName.MatchString(strings.TrimSpace(inner)) {
			b.WriteString(rest[:i+2])
			rest = rest[i+2:]
			continue
		}
		b.WriteString(rest[:i])
		b.WriteString(c.placeholder(path, inner))
		rest = rest[i+2+j+2:]
	}
	b.WriteString(rest)
	return b.String()
}

// placeholder returns what a {{inner}} placeholder becomes. Lope looks the text between the
// braces up as it is: IP, PORT, SESSION_KEY and SESSION_VALUE in any case (before variables,
// which they shadow), then a variable of exactly that name, else it writes None. So spaces
// around a name make it unknown to Lope, where Parley would trim them.
func (c *converter) placeholder(path, inner string) string {
	name := strings.TrimSpace(inner)
	if name != inner {
		c.note(path, "{{%s}}: Lope looks the name up with its spaces, finds nothing and sends the text None in its place; so does the converted reply", inner)
		return "None"
	}
	switch reserved := strings.ToUpper(name); reserved {
	case rules.TemplateIP, rules.TemplatePort, rules.TemplateSessionKey, rules.TemplateSessionValue:
		if _, shadowed := c.vars[name]; shadowed {
			c.note(path, "{{%s}} is Lope's reserved %s (in any case), not variable %q; written {{%s}}", name, reserved, name, reserved)
		}
		if (reserved == rules.TemplateSessionKey || reserved == rules.TemplateSessionValue) && !c.hasSession() {
			c.drop(path, "{{%s}} needs operation.session to be enabled; replaced by the text None, as Lope writes for names it cannot resolve", name)
			return "None"
		}
		return "{{" + reserved + "}}"
	}
	if _, ok := c.vars[name]; ok {
		return "{{" + name + "}}"
	}
	c.note(path, "{{%s}} names no declared variable: Lope sends the text None in its place, and so does the converted reply", name)
	return "None"
}

// lopeTemplate finds what Lope takes for a placeholder: any text between {{ and }} on one
// line.
var lopeTemplate = regexp.MustCompile(`\{\{(.*?)\}\}`)

// nestedTemplate notes a value that holds a placeholder: when a reply shows the variable,
// Lope fills templates again in what it substituted, until none is left; Parley fills a
// reply in one pass and sends the value as it is.
func (c *converter) nestedTemplate(path, val string) {
	if m := lopeTemplate.FindString(val); m != "" {
		c.note(path, "holds %s: Lope fills templates again in a variable's value when a reply shows it, Parley sends the value as it is (one pass), so that reply shows %s literally", m, m)
	}
}

// reservedInput returns the canonical spelling of an operation input Lope reads as a
// reserved name (EXT_IN, IP, PORT, SESSION_KEY, SESSION_VALUE, in any case), or "".
func reservedInput(in string) string {
	switch up := strings.ToUpper(in); up {
	case "EXT_IN", rules.TemplateIP, rules.TemplatePort, rules.TemplateSessionKey, rules.TemplateSessionValue:
		return up
	}
	return ""
}

// hasSession says whether the converted rules identify connections by a session id, which
// SESSION_KEY, SESSION_VALUE and session updates need.
func (c *converter) hasSession() bool {
	s := c.res.Rules.Spec.Operation.Session
	return s != nil && s.Enabled
}
