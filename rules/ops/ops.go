// Package ops holds the built-in memory operations a rule may run when it fires: Lope's list
// of string, number, statistics and logic operations, computed the way Python computes them
// so that rules written for Lope print the same results.
package ops

import (
	"fmt"
	"sort"

	"github.com/parley-dev/parley/rules/codec"
	"github.com/parley-dev/parley/rules/value"
)

// Env carries what operations need from the conversation.
type Env struct{ Codec codec.Codec } // nil Codec = utf-8

// Op describes one built-in operation.
type Op struct {
	Name                   string
	MinInputs, MaxInputs   int // MaxInputs -1 = unbounded
	MinOutputs, MaxOutputs int // MaxOutputs -1 = unbounded
	RegexInput             int // index of the input that is a regular expression (Go RE2), -1 if none
	// Run returns exactly nOut values, or an error naming the operation.
	Run func(env Env, in []value.Value, nOut int) ([]value.Value, error)
}

// Arity describes how many inputs or outputs an operation takes, from lo to hi (hi -1 =
// unbounded), for messages: "2", "1 to 3", "0 or more".
func Arity(lo, hi int) string {
	switch {
	case hi < 0:
		return fmt.Sprintf("%d or more", lo)
	case lo == hi:
		return fmt.Sprint(lo)
	default:
		return fmt.Sprintf("%d to %d", lo, hi)
	}
}

// outputLimit bounds what an unbounded operation allocates when handed an absurd count.
const outputLimit = 1 << 16

type runFunc func(env Env, in []value.Value, nOut int) ([]value.Value, error)

var registry = build(stringOps(), numberOps(), statsOps(), logicOps())

// Lookup returns the operation called name.
func Lookup(name string) (*Op, bool) {
	op, ok := registry[name]
	if !ok {
		return nil, false
	}
	// A copy, so that no caller can change what another one looks up.
	c := *op
	return &c, true
}

// Names lists every operation, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func build(groups ...[]Op) map[string]*Op {
	m := make(map[string]*Op)
	for _, g := range groups {
		for i := range g {
			op := g[i]
			if _, dup := m[op.Name]; dup {
				panic("ops: duplicate operation " + op.Name)
			}
			op.Run = guard(op, op.Run)
			m[op.Name] = &op
		}
	}
	return m
}

// guard checks the counts the compiler should already have checked, so that a runtime bug
// there becomes an error rather than an index panic, and prefixes errors with the name.
func guard(op Op, run runFunc) runFunc {
	return func(env Env, in []value.Value, nOut int) ([]value.Value, error) {
		if len(in) < op.MinInputs || (op.MaxInputs >= 0 && len(in) > op.MaxInputs) {
			return nil, fmt.Errorf("%s: %s, got %d", op.Name, countText("input", op.MinInputs, op.MaxInputs), len(in))
		}
		if nOut < op.MinOutputs || (op.MaxOutputs >= 0 && nOut > op.MaxOutputs) {
			return nil, fmt.Errorf("%s: %s, got %d", op.Name, countText("output", op.MinOutputs, op.MaxOutputs), nOut)
		}
		if nOut > outputLimit {
			return nil, fmt.Errorf("%s: %d outputs is more than the %d allowed", op.Name, nOut, outputLimit)
		}
		out, err := run(env, in, nOut)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op.Name, err)
		}
		return out, nil
	}
}

func countText(what string, lo, hi int) string {
	switch {
	case hi < 0:
		return fmt.Sprintf("needs at least %d %ss", lo, what)
	case lo == hi:
		return fmt.Sprintf("needs exactly %d %ss", lo, what)
	default:
		return fmt.Sprintf("needs %d to %d %ss", lo, hi, what)
	}
}

// single adapts an operation with one result.
func single(f func(env Env, in []value.Value) (value.Value, error)) runFunc {
	return func(env Env, in []value.Value, _ int) ([]value.Value, error) {
		v, err := f(env, in)
		if err != nil {
			return nil, err
		}
		return []value.Value{v}, nil
	}
}

// variadic and fixed declare one-output operations; regex is the regex input or -1.
func variadic(name string, minIn int, f func(env Env, in []value.Value) (value.Value, error)) Op {
	return Op{Name: name, MinInputs: minIn, MaxInputs: -1, MinOutputs: 1, MaxOutputs: 1, RegexInput: -1, Run: single(f)}
}

func fixed(name string, nIn, regex int, f func(env Env, in []value.Value) (value.Value, error)) Op {
	return Op{Name: name, MinInputs: nIn, MaxInputs: nIn, MinOutputs: 1, MaxOutputs: 1, RegexInput: regex, Run: single(f)}
}
