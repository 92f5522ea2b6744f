package rules

import (
	"fmt"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules/value"
)

// Names of the session in templates and operation inputs.
const (
	TemplateSessionKey   = "SESSION_KEY"
	TemplateSessionValue = "SESSION_VALUE"
	// MaxSessionValue bounds a session id taken from the network.
	MaxSessionValue = 256
)

// Session is a compiled operation.session.
type Session struct {
	Key, Separator, EndValue string
	Generate                 *Generator
	UpdateOnDetected         bool
	// avoid are the texts a generated id never holds: the separator and endValue.
	avoid []string
}

// Extract returns the session id an input carries: the text after the first key and
// separator, up to EndValue or whitespace, at most MaxSessionValue bytes; "" when absent.
func (s *Session) Extract(text string) string {
	marker := s.Key + s.Separator
	i := strings.Index(text, marker)
	if i < 0 {
		return ""
	}
	v := text[i+len(marker):]
	if s.EndValue != "" {
		if j := strings.Index(v, s.EndValue); j >= 0 {
			v = v[:j]
		}
	}
	if j := strings.IndexFunc(v, unicode.IsSpace); j >= 0 {
		v = v[:j]
	}
	if len(v) > MaxSessionValue {
		v = v[:MaxSessionValue]
	}
	return v
}

// NewID makes a session id as operation.session.generate says.
func (s *Session) NewID() string { return s.Generate.randomString() }

// SessionUpdate is a compiled rule sessionUpdate.
type SessionUpdate struct {
	Value string
	From  *VarRef
	// Generate, when set, makes a new id.
	Generate *Generator
}

// NewID makes a new id for a sessionUpdate with generate.
func (u *SessionUpdate) NewID() string { return u.Generate.randomString() }

func (c *compiler) session(path *field.Path) {
	op := &c.spec.Operation
	s := op.Session
	if s == nil || !s.Enabled {
		return
	}
	sess := &Session{Key: s.Key, Separator: "=", EndValue: s.EndValue, UpdateOnDetected: c.p.UpdateOnDetected}
	if s.Key == "" {
		c.add(field.Required(path.Child("key"), "the text that announces the session id, e.g. SESSIONID"))
	}
	if s.Separator != nil {
		sess.Separator = *s.Separator
	}
	gen := s.Generate
	if gen == nil {
		gen = &v1alpha1.Generate{}
	}
	sess.Generate = c.generator(path.Child("generate"), value.String, gen)
	if s.Generate == nil {
		sess.Generate = nil
	} else if sess.Generate.Length > MaxSessionValue {
		c.add(field.Invalid(path.Child("generate", "length"), sess.Generate.Length,
			fmt.Sprintf("a session id is read back at most %d bytes long", MaxSessionValue)))
	}
	// A generated id holding the separator or endValue would not read back whole.
	for _, a := range []string{sess.Separator, sess.EndValue} {
		if a != "" {
			sess.avoid = append(sess.avoid, a)
		}
	}
	if sess.Generate != nil {
		sess.Generate.Avoid = sess.avoid
	}
	switch s.UpdateWhen {
	case "":
	case v1alpha1.MemoryUpdateDetected, v1alpha1.MemoryUpdateExecuted:
		sess.UpdateOnDetected = s.UpdateWhen == v1alpha1.MemoryUpdateDetected
	default:
		c.add(field.NotSupported(path.Child("updateWhen"), s.UpdateWhen, []string{string(v1alpha1.MemoryUpdateDetected), string(v1alpha1.MemoryUpdateExecuted)}))
	}
	c.p.Session = sess
}

func (c *compiler) sessionUpdate(path *field.Path, u *v1alpha1.SessionUpdate) *SessionUpdate {
	if c.p.Session == nil {
		c.add(field.Invalid(path, "", "needs operation.session.enabled"))
		return nil
	}
	set := 0
	out := &SessionUpdate{Value: u.Value}
	if u.Value != "" {
		set++
	}
	if u.Generate {
		set++
		// Without operation.session.generate, ids are made with Lope's defaults.
		out.Generate = c.p.Session.Generate
		if out.Generate == nil {
			out.Generate = &Generator{Length: DefaultGenerateLength, Alphabet: alphabets[v1alpha1.CharsetAlphanumericLower], Avoid: c.p.Session.avoid}
		}
	}
	if u.FromVariable != "" {
		set++
		if ref, ok := c.variable(path.Child("fromVariable"), u.FromVariable); ok {
			out.From = &ref
		}
	}
	if set != 1 {
		c.add(field.Invalid(path, "", "set exactly one of value, fromVariable or generate"))
	}
	return out
}
