package rules

import (
	"regexp"
	"slices"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules/expr"
	"github.com/parley-dev/parley/rules/value"
)

// DefaultSpace is the memory space of rules that name none.
const DefaultSpace = "default"

// spacePattern is the API's pattern for memory.space, checked here too because `parley run`
// and `parley check` read files the API server never saw.
var spacePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,63}$`)

// StartWhen is a compiled operation.startWhen: a client dials once Conditions hold over
// the shared variables, at the target IP and Port take from them when set.
type StartWhen struct {
	Conditions []Condition
	// When, if set, must hold as well; it reads shared variables only, through WhenEnv.
	When     *Expr
	WhenEnv  *ExprEnv
	IP, Port *VarRef
	// Reads are the shared variables it reads (indexes into Program.Shared, ascending).
	Reads []int
}

// sharedMemory compiles memory.space, memory.sharedInit and operation.startWhen, and
// refuses a shared name also declared in another scope: the lookup order would hide it.
func (c *compiler) sharedMemory(path *field.Path) {
	m := &c.spec.Memory
	c.p.Space = m.Space
	switch {
	case m.Space == "":
		c.p.Space = DefaultSpace
	case !spacePattern.MatchString(m.Space):
		c.add(field.Invalid(path.Child("space"), m.Space, "must be 1 to 63 letters, digits, _, . or -"))
	}
	switch m.SharedInit {
	case "", v1alpha1.SharedInitKeepExisting:
	case v1alpha1.SharedInitOverwrite:
		c.p.SharedOverwrite = true
	default:
		c.add(field.NotSupported(path.Child("sharedInit"), m.SharedInit,
			[]string{string(v1alpha1.SharedInitKeepExisting), string(v1alpha1.SharedInitOverwrite)}))
	}
	for i, v := range m.Shared {
		for _, other := range []struct {
			scope string
			vars  []v1alpha1.Variable
		}{{"connection", m.Connection}, {"global", m.Global}} {
			if v.Name != "" && slices.ContainsFunc(other.vars, func(o v1alpha1.Variable) bool { return o.Name == v.Name }) {
				c.add(field.Invalid(path.Child("shared").Index(i).Child("name"), v.Name,
					"already declared under spec.memory."+other.scope+"; a variable name is unique across scopes"))
			}
		}
	}
	if sw := c.spec.Operation.StartWhen; sw != nil {
		c.p.StartWhen = c.startWhen(c.root.Child("operation", "startWhen"), sw)
	}
}

func (c *compiler) startWhen(path *field.Path, sw *v1alpha1.StartWhen) *StartWhen {
	if c.spec.Operation.Mode != v1alpha1.ModeClient {
		c.add(field.Invalid(path, "", "only client mode waits before it dials"))
	}
	out := &StartWhen{Conditions: c.conditions(path.Child("conditions"), sw.Conditions)}
	var refs []VarRef
	for i, cd := range out.Conditions {
		refs = append(refs, cd.Var)
		if cd.Var.Scope != ScopeShared || (cd.From != nil && cd.From.Scope != ScopeShared) {
			c.add(field.Invalid(path.Child("conditions").Index(i), cd.Var.Name, "startWhen reads shared variables only (spec.memory.shared)"))
		}
		if cd.From != nil {
			refs = append(refs, *cd.From)
		}
	}
	target := func(p *field.Path, name string, kinds ...value.Kind) *VarRef {
		if name == "" {
			return nil
		}
		ref, ok := c.variable(p, name)
		switch {
		case !ok:
			return nil
		case ref.Scope != ScopeShared:
			c.add(field.Invalid(p, name, "must be a shared variable (spec.memory.shared)"))
			return nil
		case !slices.Contains(kinds, ref.Kind):
			c.add(field.Invalid(p, name, "variable "+name+" is "+ref.Kind.String()))
			return nil
		}
		refs = append(refs, ref)
		return &ref
	}
	out.IP = target(path.Child("ipFromVariable"), sw.IPFromVariable, value.String)
	out.Port = target(path.Child("portFromVariable"), sw.PortFromVariable, value.Int, value.String)
	if len(sw.Conditions) == 0 && sw.When == "" {
		c.add(field.Required(path.Child("conditions"), "what shared memory must hold before the client dials"))
	}
	if sw.When != "" {
		// Over shared variables only: no input, peer or conversation exists yet.
		env, err := NewExprEnv(0, ScopeVars{ScopeShared, c.p.Shared})
		if err != nil {
			c.add(field.InternalError(path.Child("when"), err))
		} else if out.When = c.compileExprIn(env, path.Child("when"), sw.When, expr.Bool); out.When != nil {
			out.WhenEnv = env
			refs = append(refs, env.Vars...)
		}
	}
	out.Reads = sharedOf(refs)
	return out
}

// sharedUse lists the shared variables a compiled rule reads and writes.
func sharedUse(r *Rule) (reads, writes []int) {
	var rd, wr []VarRef
	rd = append(rd, conditionRefs(r.Conditions)...)
	for _, cp := range r.Captures {
		wr = append(wr, cp.Var)
	}
	for _, u := range r.Updates {
		wr = append(wr, u.Var)
		if u.From != nil {
			rd = append(rd, *u.From)
		}
	}
	if op := r.Operation; op != nil {
		for _, in := range op.Inputs {
			if in.Kind == OperandVar {
				rd = append(rd, in.Var)
			}
		}
		wr = append(wr, op.Outputs...)
	}
	if r.Response != nil {
		rd = append(rd, r.Response.Vars()...)
	}
	if r.Switch != nil {
		for _, o := range r.Switch.Options {
			rd = append(rd, conditionRefs(o.Conditions)...)
		}
	}
	if r.Loop != nil {
		rd = append(rd, conditionRefs(r.Loop.Conditions)...)
	}
	if u := r.SessionUpdate; u != nil && u.From != nil {
		rd = append(rd, *u.From)
	}
	return sharedOf(rd), sharedOf(wr)
}

func conditionRefs(cs []Condition) []VarRef {
	var out []VarRef
	for _, cd := range cs {
		out = append(out, cd.Var)
		if cd.From != nil {
			out = append(out, *cd.From)
		}
	}
	return out
}

// sharedOf is the ascending, distinct indexes of the shared variables among refs.
func sharedOf(refs []VarRef) []int {
	var out []int
	for _, r := range refs {
		if r.Scope == ScopeShared && !slices.Contains(out, r.Index) {
			out = append(out, r.Index)
		}
	}
	slices.Sort(out)
	return out
}

// Vars lists the variables the template reads, in order of appearance.
func (t *Template) Vars() []VarRef {
	if t == nil {
		return nil
	}
	var out []VarRef
	for _, p := range t.parts {
		if p.kind == partVar {
			out = append(out, p.ref)
		}
	}
	return out
}

// SharedOf lists the shared variables among refs (indexes into Program.Shared, ascending).
func SharedOf(refs []VarRef) []int { return sharedOf(refs) }
