package expr

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"

	"github.com/parley-dev/parley/rules/codec"
	"github.com/parley-dev/parley/rules/value"
)

// Result is what an entry point needs an expression to give.
type Result uint8

const (
	// Bool: a condition (a rule's when).
	Bool Result = iota
	// Scalar: a value stored into a variable (int, uint, double, bool, string or bytes).
	Scalar
	// Text: a rewritten input or reply (string or bytes).
	Text
	// Printable: a template piece (a scalar, a timestamp or a duration).
	Printable
)

var accepted = map[Result][]*cel.Type{
	Bool:      {cel.BoolType},
	Scalar:    {cel.IntType, cel.UintType, cel.DoubleType, cel.BoolType, cel.StringType, cel.BytesType},
	Text:      {cel.StringType, cel.BytesType},
	Printable: {cel.IntType, cel.UintType, cel.DoubleType, cel.BoolType, cel.StringType, cel.BytesType, cel.TimestampType, cel.DurationType},
}

var resultNames = map[Result]string{
	Bool: "bool", Scalar: "int, uint, double, bool, string or bytes", Text: "string or bytes",
	Printable: "int, uint, double, bool, string, bytes, timestamp or duration",
}

// Program is a compiled expression, safe for concurrent use.
type Program struct {
	// Source is the expression as written.
	Source string
	// Cost is its estimated worst cost, at most MaxCost.
	Cost uint64
	// Limited says whether evaluations are cut at MaxCost: only expressions whose cost
	// depends on how long the values they read are need it.
	Limited bool
	prog    cel.Program
}

// Compile parses, type-checks and prices src, which must give want. It returns every problem
// in one error: unknown names, type errors, a wrong result type, a cost over MaxCost.
func (e *Env) Compile(src string, want Result) (*Program, error) {
	return e.compile(e.base, src, want)
}

// CompileOutput compiles a transform of replies: src sees `output`, the reply as a string,
// and gives a string or bytes.
func (e *Env) CompileOutput(src string) (*Program, error) {
	return e.compile(e.output, src, Text)
}

func (e *Env) compile(env *cel.Env, src string, want Result) (*Program, error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("empty expression")
	}
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		return nil, e.issues(src, iss)
	}
	if t := ast.OutputType(); !acceptable(t, want) {
		return nil, fmt.Errorf("gives %s, not %s", typeName(t), resultNames[want])
	}
	est, err := env.EstimateCost(ast, sizer{e: e})
	if err != nil {
		return nil, fmt.Errorf("cost estimate: %w", err)
	}
	if est.Max > MaxCost {
		return nil, fmt.Errorf("estimated cost %s is over the budget of %d for inputs of %d bytes and variables of %d characters (loops over the input, nested loops or large values; docs/rules.md §13)",
			costText(est.Max), MaxCost, e.sizes.Input, e.sizes.Value)
	}
	// Tracking the cost of an evaluation costs more than most evaluations (an allocation
	// and a call per step): an expression whose cost stays within the budget whatever its
	// names hold (`hits == 3`, `input.startsWith('A')`) runs without it.
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	limited := true
	if any, err := env.EstimateCost(ast, sizer{e: e, anySize: true}); err == nil && any.Max <= MaxCost {
		limited = false
	} else {
		opts = append(opts, cel.CostLimit(MaxCost))
	}
	prog, err := env.Program(ast, opts...)
	if err != nil {
		return nil, fmt.Errorf("program: %w", err)
	}
	return &Program{Source: src, Cost: est.Max, Limited: limited, prog: prog}, nil
}

func costText(c uint64) string {
	if c == ^uint64(0) {
		return "unbounded"
	}
	return fmt.Sprint(c)
}

func acceptable(t *cel.Type, want Result) bool {
	if t.Kind() == types.DynKind {
		return true // checked when it runs
	}
	for _, a := range accepted[want] {
		if t.IsExactType(a) {
			return true
		}
	}
	return false
}

func typeName(t *cel.Type) string { return t.String() }

var inContainer = regexp.MustCompile(` \(in container '[^']*'\)`)

// issues turns CEL's errors into one line each, with their column, and says why a declared
// variable that the expression seems to name is not visible.
func (e *Env) issues(src string, iss *cel.Issues) error {
	var msgs []string
	for _, err := range iss.Errors() {
		msg := inContainer.ReplaceAllString(err.Message, "")
		if loc := err.Location; loc != nil && loc.Line() > 0 {
			msg = fmt.Sprintf("%d:%d: %s", loc.Line(), loc.Column()+1, msg)
		}
		msgs = append(msgs, msg)
	}
	for _, h := range e.hidden {
		name := h[len("variable \""):]
		name = name[:strings.IndexByte(name, '"')]
		if strings.Contains(src, name) {
			msgs = append(msgs, h)
		}
	}
	return errors.New(strings.Join(msgs, "; "))
}

// Eval runs the program in a.
func (p *Program) Eval(a *Activation) (ref.Val, error) {
	a.now = time.Time{} // one `now` per evaluation, read when first named
	out, _, err := p.prog.Eval(a)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Bool runs a condition.
func (p *Program) Bool(a *Activation) (bool, error) {
	out, err := p.Eval(a)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("gave %s, not bool", out.Type().TypeName())
	}
	return bool(b), nil
}

// Value runs the program and gives its result as a memory value: int, uint and double as
// numbers, bytes as text in the conversation's encoding c, a timestamp or a duration as CEL
// prints them. The caller converts it to a variable's type as a capture is.
func (p *Program) Value(a *Activation, c codec.Codec) (value.Value, error) {
	out, err := p.Eval(a)
	if err != nil {
		return value.Value{}, err
	}
	return ToValue(out, c)
}

// Text runs a transform: a string as it is, bytes as text in encoding c.
func (p *Program) Text(a *Activation, c codec.Codec) (string, error) {
	out, err := p.Eval(a)
	if err != nil {
		return "", err
	}
	switch v := out.(type) {
	case types.String:
		return string(v), nil
	case types.Bytes:
		return c.Decode(v), nil
	}
	return "", fmt.Errorf("gave %s, not string or bytes", out.Type().TypeName())
}

// AppendWire runs a transform of replies and appends its result to dst: a string encoded in
// c, bytes as they are.
func (p *Program) AppendWire(dst []byte, a *Activation, c codec.Codec) ([]byte, error) {
	out, err := p.Eval(a)
	if err != nil {
		return dst, err
	}
	switch v := out.(type) {
	case types.String:
		return c.AppendEncode(dst, string(v)), nil
	case types.Bytes:
		return append(dst, v...), nil
	}
	return dst, fmt.Errorf("gave %s, not string or bytes", out.Type().TypeName())
}

// ToValue converts a scalar CEL value to a memory value (see Program.Value).
func ToValue(v ref.Val, c codec.Codec) (value.Value, error) {
	switch v := v.(type) {
	case types.Int:
		return value.OfInt(int64(v)), nil
	case types.Uint:
		if uint64(v) > 1<<63-1 {
			return value.OfFloat(float64(v)), nil
		}
		return value.OfInt(int64(v)), nil
	case types.Double:
		return value.OfFloat(float64(v)), nil
	case types.Bool:
		return value.OfBool(bool(v)), nil
	case types.String:
		return value.OfString(string(v)), nil
	case types.Bytes:
		return value.OfString(c.Decode(v)), nil
	case types.Timestamp, types.Duration:
		s := v.ConvertToType(types.StringType)
		if str, ok := s.(types.String); ok {
			return value.OfString(string(str)), nil
		}
	}
	return value.Value{}, fmt.Errorf("gave %s, which is not a value a variable or a template can hold", v.Type().TypeName())
}
