package rules

import (
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/parley-dev/parley/api/v1alpha1"

	"github.com/parley-dev/parley/rules/expr"
)

// Expr is a compiled CEL expression (docs/rules.md §13) with the field path it was written
// at, which its run-time errors name.
type Expr struct {
	*expr.Program
	Field string
}

// ExprEnv is a CEL environment with the variable each of its slots reads.
type ExprEnv struct {
	*expr.Env
	// Vars maps each slot of Env.Vars() to its variable.
	Vars []VarRef
}

// ScopeVars is one scope's compiled variables, as an expression environment lists them.
type ScopeVars struct {
	Scope Scope
	Vars  []*Variable
}

// exprScopes are the scopes a conversation's expressions see, in lookup order (that of
// templates: connection, then global). A new scope adds itself here.
func (c *compiler) exprScopes() []ScopeVars {
	return []ScopeVars{{ScopeConnection, c.p.Connection}, {ScopeGlobal, c.p.Global}, {ScopeShared, c.p.Shared}}
}

// exprInputSize is the largest input an expression can see, for its cost estimate: one read
// of at most maxInputSize bytes, or a frame of the operation's framing or of any rule's
// (which a rule switches to), whichever is longest.
func (c *compiler) exprInputSize() int {
	n := c.p.MaxInputSize
	if f := c.p.Framing; f != nil {
		n = max(n, f.MaxFrameSize)
	}
	ruleFrames := func(rs []v1alpha1.Rule) {
		for i := range rs {
			if f := rs[i].Framing; f != nil && f.Type != v1alpha1.FramingRead && f.Type != "" {
				size := DefaultMaxFrameSize
				if f.MaxFrameSize != nil {
					size = int(*f.MaxFrameSize)
				}
				n = max(n, min(size, MaxFrameSizeLimit))
			}
		}
	}
	ruleFrames(c.spec.Conversation.Rules)
	for i := range c.spec.Conversation.Groups {
		ruleFrames(c.spec.Conversation.Groups[i].Rules)
	}
	return n
}

// NewExprEnv builds an expression environment over the given scopes (a name declared in two
// sees the first) for inputs of at most inputSize bytes.
func NewExprEnv(inputSize int, scopes ...ScopeVars) (*ExprEnv, error) {
	var vars []expr.Var
	var refs []VarRef
	seen := map[string]bool{}
	for _, s := range scopes {
		for i, v := range s.Vars {
			if seen[v.Name] {
				continue
			}
			seen[v.Name] = true
			vars = append(vars, expr.Var{Name: v.Name, Kind: v.Kind})
			refs = append(refs, VarRef{Scope: s.Scope, Index: i, Kind: v.Kind, Name: v.Name})
		}
	}
	env, err := expr.NewEnv(vars, expr.Sizes{Input: inputSize, Value: expr.DefaultValueSize})
	if err != nil {
		return nil, err
	}
	// expr.NewEnv skips names CEL cannot use: keep the slots of those it kept.
	kept := make([]VarRef, 0, len(env.Vars()))
	for _, v := range env.Vars() {
		for _, r := range refs {
			if r.Name == v.Name {
				kept = append(kept, r)
				break
			}
		}
	}
	return &ExprEnv{Env: env, Vars: kept}, nil
}

// exprEnv is the conversation's expression environment, built when the first expression is
// compiled: specs without CEL pay nothing for it. Called once memory is compiled.
func (c *compiler) exprEnv() *ExprEnv {
	if c.p.Expr == nil && !c.exprFailed {
		env, err := NewExprEnv(c.exprInputSize(), c.exprScopes()...)
		if err != nil {
			c.exprFailed = true
			c.add(field.InternalError(c.root.Child("memory"), err))
			return nil
		}
		c.p.Expr = env
	}
	return c.p.Expr
}

// compileExpr compiles the conversation's expression src, written at path, which must give
// want; every problem is an error at path.
func (c *compiler) compileExpr(path *field.Path, src string, want expr.Result) *Expr {
	env := c.exprEnv()
	if env == nil {
		return nil
	}
	return c.compileExprIn(env, path, src, want)
}

// compileExprIn compiles src in env (the conversation's, or one over other variables, such
// as startWhen's over shared memory).
func (c *compiler) compileExprIn(env *ExprEnv, path *field.Path, src string, want expr.Result) *Expr {
	p, err := env.Compile(src, want)
	if err != nil {
		c.add(field.Invalid(path, src, err.Error()))
		return nil
	}
	return &Expr{Program: p, Field: path.String()}
}

// transform compiles operation.transform.
func (c *compiler) transform(path *field.Path) {
	t := c.spec.Operation.Transform
	if t == nil {
		return
	}
	if t.Input != "" {
		c.p.TransformInput = c.compileExpr(path.Child("input"), t.Input, expr.Text)
	}
	if t.Output != "" {
		env := c.exprEnv()
		if env == nil {
			return
		}
		p, err := env.CompileOutput(t.Output)
		if err != nil {
			c.add(field.Invalid(path.Child("output"), t.Output, err.Error()))
			return
		}
		c.p.TransformOutput = &Expr{Program: p, Field: path.Child("output").String()}
	}
}
