package expr_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/parley-dev/parley/rules/expr"
	"github.com/parley-dev/parley/rules/value"
)

// FuzzEval compiles an expression and evaluates it on an input, both hostile: compiling
// either refuses it or gives a program within the budget, and evaluating it on any input (a
// variable holding the input as well) gives a value or an error, never a panic or a run
// past the cost limit. Seeds: testdata/fuzz/FuzzEval.
func FuzzEval(f *testing.F) {
	env := newEnv(f, 1024)
	f.Fuzz(func(t *testing.T, src string, input []byte) {
		if len(input) > 1024 {
			input = input[:1024]
		}
		p, err := env.Compile(src, expr.Printable)
		if err != nil {
			return
		}
		if p.Cost > expr.MaxCost {
			t.Fatalf("%q compiled with cost %d over the budget", src, p.Cost)
		}
		text := string(input)
		if !utf8.ValidString(text) {
			text = strings.ToValidUTF8(text, "\uFFFD")
		}
		a := newActivation(env, text)
		a.Raw = input
		a.Memory = memory{value.OfInt(int64(len(input))), value.OfFloat(0.5), value.OfBool(len(input)%2 == 0), value.OfString(text), value.OfString(text)}
		_, _ = p.Value(a, binaryCodec)
	})
}
