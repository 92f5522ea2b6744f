package connector

import (
	"fmt"

	"github.com/parley-dev/parley/rules"
	"github.com/parley-dev/parley/rules/expr"
	"github.com/parley-dev/parley/rules/value"
)

// The connector's side of CEL expressions (docs/rules.md §13): the conversation is what they
// read, and a failure is an Error activity naming the expression's field path, after which
// the conversation goes on as documented there: a failed when does not fire its rule, a
// failed update leaves its variable unchanged, a failed template piece is empty, a failed
// transform leaves the input or the reply as it was.

// ExprActivation implements rules.Env: the conversation's one activation, pointed at its
// current peer and session. Called with mu held.
func (cv *conversation) ExprActivation() *expr.Activation {
	a := cv.exprAct
	if a == nil {
		a = cv.prog.Expr.NewActivation(cv)
		cv.exprAct = a
		if s := cv.prog.Session; s != nil {
			a.SessionKey = s.Key
		}
		a.ConnID = cv.id
	}
	a.Peer, a.SessionValue = cv.peer, cv.session
	return a
}

// ExprValue implements expr.Memory: a variable as memory holds it, or as the captures of the
// rule whose when is being evaluated would store it.
func (cv *conversation) ExprValue(slot int) value.Value {
	ref := cv.prog.Expr.Vars[slot]
	captures := cv.work().exprCaptures
	for i := len(captures) - 1; i >= 0; i-- {
		if c := captures[i]; c.ref.Scope == ref.Scope && c.ref.Index == ref.Index {
			return c.v
		}
	}
	return cv.Get(ref)
}

// exprCapture is a value a rule's capture would store.
type exprCapture struct {
	ref rules.VarRef
	v   value.Value
}

// ExprFailed implements rules.Env: a `{{= }}` piece failed.
func (cv *conversation) ExprFailed(e *rules.Expr, err error) {
	cv.recordError(fmt.Sprintf("%s: %v", e.Field, err))
}

// exprInput makes text (raw as received) the input expressions see, and counts it.
func (cv *conversation) exprInput(text string, raw []byte) {
	if cv.prog.Expr == nil {
		return
	}
	a := cv.ExprActivation()
	a.Input, a.Raw = text, raw
	a.ConnInputs++
}

// exprNoInput empties the input expressions see: an async run has none.
func (cv *conversation) exprNoInput() {
	if cv.exprAct != nil {
		cv.exprAct.Input, cv.exprAct.Raw = "", nil
	}
}

// whenOnInput reports whether r's when holds on an input's text: it reads the variables r
// captures as its captures would store them from text (they are stored only if r fires),
// so `captures: [bid]` with `when: "bid > best"` compares this input's bid.
func (cv *conversation) whenOnInput(r *rules.Rule, text string) bool {
	if r.When == nil {
		return true
	}
	w := cv.work()
	for _, cp := range r.Captures {
		m := cp.Regex.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		val := m[0]
		if len(m) > 1 {
			val = m[1]
		}
		if v, err := value.OfString(val).Store(cp.Var.Kind); err == nil {
			w.exprCaptures = append(w.exprCaptures, exprCapture{cp.Var, v})
		}
	}
	ok := cv.when(r)
	clear(w.exprCaptures)
	w.exprCaptures = w.exprCaptures[:0]
	return ok
}

// when reports whether r's when holds (true without one); a failure is an Error and the
// rule does not fire.
func (cv *conversation) when(r *rules.Rule) bool {
	if r.When == nil {
		return true
	}
	ok, err := r.When.Bool(cv.ExprActivation())
	if err != nil {
		cv.recordError(fmt.Sprintf("rule %d: %s: %v", r.ID, r.When.Field, err))
		return false
	}
	return ok
}

// exprUpdate is the new value of an update with expr; false when it failed (recorded).
func (cv *conversation) exprUpdate(r *rules.Rule, u *rules.Update) (value.Value, bool) {
	v, err := u.Expr.Value(cv.ExprActivation(), cv.prog.Codec)
	if err != nil {
		cv.recordError(fmt.Sprintf("rule %d: %s: %v", r.ID, u.Expr.Field, err))
		return v, false
	}
	return v, true
}

// transformInput is text rewritten by operation.transform.input; text itself when the
// transform fails (recorded).
func (cv *conversation) transformInput(text string) string {
	t := cv.prog.TransformInput
	out, err := t.Text(cv.ExprActivation(), cv.prog.Codec)
	if err != nil {
		cv.recordError(fmt.Sprintf("%s: %v", t.Field, err))
		return text
	}
	cv.exprAct.Input = out
	return out
}

// transformOutput rewrites the reply at wire[start:] with operation.transform.output; the
// reply stays as it was when the transform fails (recorded).
func (cv *conversation) transformOutput(wire []byte, start int) []byte {
	t := cv.prog.TransformOutput
	a := cv.ExprActivation()
	a.Output = cv.prog.Codec.Decode(wire[start:])
	w := cv.work()
	out, err := t.AppendWire(w.replyScratch[:0], a, cv.prog.Codec)
	a.Output = ""
	if err != nil {
		cv.recordError(fmt.Sprintf("%s: %v", t.Field, err))
		return wire
	}
	w.replyScratch = out
	return append(wire[:start], out...)
}
