package rules

import (
	"strings"

	"github.com/parley-dev/parley/rules/codec"
	"github.com/parley-dev/parley/rules/expr"
	"github.com/parley-dev/parley/rules/value"
)

// Names a template may use besides declared variables.
const (
	TemplateIP   = "IP"
	TemplatePort = "PORT"
)

// Env resolves template names for one conversation.
type Env interface {
	Get(VarRef) value.Value
	PeerIP() string
	PeerPort() string
	SessionValue() string
	// ExprActivation is what `{{= }}` pieces read, set for the reply being rendered.
	ExprActivation() *expr.Activation
	// ExprFailed is told of a `{{= }}` piece that failed; the piece is left empty.
	ExprFailed(e *Expr, err error)
}

type partKind uint8

const (
	partText partKind = iota
	partVar
	partIP
	partPort
	partSessionValue
	partExpr
)

type part struct {
	kind partKind
	text string
	ref  VarRef
	expr *Expr
}

// Template is a reply with `{{name}}` placeholders, filled in one pass: a value that itself
// contains `{{...}}` is sent as it is, never expanded again.
type Template struct {
	parts []part
	// wire holds the encoded bytes of a template without placeholders, so the common case
	// costs nothing per reply.
	wire []byte
}

// Static reports whether the template has no placeholders.
func (t *Template) Static() bool { return t.wire != nil || len(t.parts) == 0 }

// AppendTo appends the encoded reply to dst.
func (t *Template) AppendTo(dst []byte, c codec.Codec, env Env) []byte {
	if t.Static() {
		return append(dst, t.wire...)
	}
	var b strings.Builder
	for _, p := range t.parts {
		switch p.kind {
		case partText:
			b.WriteString(p.text)
		case partVar:
			b.WriteString(env.Get(p.ref).String())
		case partIP:
			b.WriteString(env.PeerIP())
		case partPort:
			b.WriteString(env.PeerPort())
		case partSessionValue:
			b.WriteString(env.SessionValue())
		case partExpr:
			if p.expr == nil { // refused when compiled; a Program never holds one
				continue
			}
			v, err := p.expr.Value(env.ExprActivation(), c)
			if err != nil {
				env.ExprFailed(p.expr, err)
				continue
			}
			b.WriteString(v.String())
		}
	}
	return c.AppendEncode(dst, b.String())
}

// parseTemplate splits text into literal parts and placeholders; resolve maps a name to a
// part or reports it unknown, compile turns the source of a `{{= expr }}` piece into a part.
// Only `{{identifier}}` and `{{= ...}}` are placeholders, so binary replies that happen to
// hold "{{" stay literal. An expression ends at the first "}}".
func parseTemplate(text string, c codec.Codec, resolve func(name string) (part, bool), compile func(src string) part) (*Template, []string) {
	t := &Template{}
	var unknown []string
	rest := text
	var lit strings.Builder
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			lit.WriteString(rest)
			break
		}
		j := strings.Index(rest[i+2:], "}}")
		if j < 0 {
			lit.WriteString(rest)
			break
		}
		name := strings.TrimSpace(rest[i+2 : i+2+j])
		if src, isExpr := strings.CutPrefix(name, "="); isExpr {
			lit.WriteString(rest[:i])
			if lit.Len() > 0 {
				t.parts = append(t.parts, part{kind: partText, text: lit.String()})
				lit.Reset()
			}
			t.parts = append(t.parts, compile(strings.TrimSpace(src)))
			rest = rest[i+2+j+2:]
			continue
		}
		if !isIdentifier(name) {
			lit.WriteString(rest[:i+2])
			rest = rest[i+2:]
			continue
		}
		lit.WriteString(rest[:i])
		p, ok := resolve(name)
		if !ok {
			unknown = append(unknown, name)
		}
		if lit.Len() > 0 {
			t.parts = append(t.parts, part{kind: partText, text: lit.String()})
			lit.Reset()
		}
		t.parts = append(t.parts, p)
		rest = rest[i+2+j+2:]
	}
	if lit.Len() > 0 {
		t.parts = append(t.parts, part{kind: partText, text: lit.String()})
	}
	if len(t.parts) == 0 || (len(t.parts) == 1 && t.parts[0].kind == partText) {
		t.wire = codec.Encode(c, text)
		if t.wire == nil {
			t.wire = []byte{}
		}
	}
	return t, unknown
}

func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z'):
		case i > 0 && ((r >= '0' && r <= '9') || r == '.' || r == '-'):
		default:
			return false
		}
	}
	return true
}
