// Package expr is Parley's CEL: the environment rules' expressions are checked against (the
// declared variables, the input, the peer, the conversation), the Parley library for wire
// formats, the cost bounds, and the evaluation of compiled expressions. docs/rules.md §13
// describes it for users.
//
// It knows nothing of where an expression sits in a spec: the rules compiler (package rules)
// builds one Env per conversation, compiles every entry point with it and reports errors at
// their field paths; the connector evaluates the compiled Programs with one reusable
// Activation per conversation.
package expr

import (
	"fmt"
	"sort"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/ext"

	"github.com/parley-dev/parley/rules/value"
)

// Names an expression may use besides declared variables.
const (
	NameInput        = "input"
	NameRaw          = "raw"
	NameOutput       = "output"
	NamePeerIP       = "peer.ip"
	NamePeerPort     = "peer.port"
	NameConnID       = "conn.id"
	NameConnInputs   = "conn.inputs"
	NameSessionKey   = "session.key"
	NameSessionValue = "session.value"
	NameNow          = "now"
)

// builtinRoots are the first segments of the built-in names: a declared variable whose name
// starts with one of them (`input`, `peer.x`) would be shadowed by, or shadow, a built-in, so
// it is not visible in CEL (docs/rules.md §13).
var builtinRoots = map[string]bool{
	"input": true, "raw": true, "output": true, "peer": true, "conn": true, "session": true, "now": true,
}

// celReserved are CEL's reserved words (the CEL language definition): none can name a variable.
var celReserved = map[string]bool{
	"true": true, "false": true, "null": true, "in": true, "as": true, "break": true, "const": true,
	"continue": true, "else": true, "for": true, "function": true, "if": true, "import": true,
	"let": true, "loop": true, "package": true, "namespace": true, "return": true, "var": true,
	"void": true, "while": true,
}

// Var is a declared variable as an expression sees it.
type Var struct {
	Name string
	Kind value.Kind
}

// Sizes bound what an expression can read, so that its cost can be estimated before it ever
// runs: Input is the largest input (maxInputSize, or the framing's maxFrameSize), Value the
// largest string a variable can hold.
type Sizes struct {
	Input int
	Value int
}

// Env is the CEL environment of one conversation. It is immutable and safe for concurrent use.
type Env struct {
	base   *cel.Env
	output *cel.Env // base plus `output`, for transform.output; built on first use
	sizes  Sizes
	vars   []Var
	slots  map[string]int // visible variable name → index in vars
	hidden []string       // declared names that cannot be named in CEL, with why
}

// NewEnv builds the environment of a conversation whose variables are vars, in lookup order:
// when two scopes declare one name, the first wins, as templates look names up.
func NewEnv(vars []Var, sizes Sizes) (*Env, error) {
	e := &Env{sizes: sizes, slots: map[string]int{}}
	opts := []cel.EnvOption{
		cel.Variable(NameInput, cel.StringType),
		cel.Variable(NameRaw, cel.BytesType),
		cel.Variable(NamePeerIP, cel.StringType),
		cel.Variable(NamePeerPort, cel.IntType),
		cel.Variable(NameConnID, cel.StringType),
		cel.Variable(NameConnInputs, cel.IntType),
		cel.Variable(NameSessionKey, cel.StringType),
		cel.Variable(NameSessionValue, cel.StringType),
		cel.Variable(NameNow, cel.TimestampType),
		ext.Strings(),
		ext.Encoders(),
		ext.Math(),
		ext.Lists(ext.ListsMaxRangeSize(maxRange)),
		parleyLibrary(),
		// A hostile or careless expression is refused before it can run long: see cost.go.
		cel.ParserExpressionSizeLimit(maxSource),
		cel.ExpressionNodeLimit(maxNodes),
	}
	seen := map[string]bool{}
	for _, v := range vars {
		if seen[v.Name] {
			continue
		}
		seen[v.Name] = true
		if why := invisible(v.Name); why != "" {
			e.hidden = append(e.hidden, fmt.Sprintf("variable %q %s", v.Name, why))
			continue
		}
		e.slots[v.Name] = len(e.vars)
		e.vars = append(e.vars, v)
		opts = append(opts, cel.Variable(v.Name, celType(v.Kind)))
	}
	sort.Strings(e.hidden)
	base, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("CEL environment: %w", err)
	}
	e.base = base
	out, err := base.Extend(cel.Variable(NameOutput, cel.StringType))
	if err != nil {
		return nil, fmt.Errorf("CEL environment with output: %w", err)
	}
	e.output = out
	return e, nil
}

// Vars are the variables an expression can name, in the order of their slots.
func (e *Env) Vars() []Var { return e.vars }

// invisible says why a declared name cannot be a CEL name, or "" if it can. Dotted names are
// qualified identifiers in CEL (`a.b`), so they stay visible; `-` would read as a minus.
func invisible(name string) string {
	segs := strings.Split(name, ".")
	switch {
	case strings.Contains(name, "-"):
		return "holds '-', which CEL reads as a minus: rename it to use it in CEL"
	case builtinRoots[segs[0]]:
		return fmt.Sprintf("is hidden by the built-in name %q: rename it to use it in CEL", segs[0])
	}
	for _, s := range segs {
		if celReserved[s] {
			return fmt.Sprintf("holds %q, a CEL reserved word: rename it to use it in CEL", s)
		}
	}
	return ""
}

func celType(k value.Kind) *cel.Type {
	switch k {
	case value.Int:
		return cel.IntType
	case value.Float:
		return cel.DoubleType
	case value.Bool:
		return cel.BoolType
	default:
		return cel.StringType
	}
}
