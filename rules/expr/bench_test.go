package expr_test

import (
	"testing"

	"github.com/parley-dev/parley/rules/expr"
)

// BenchmarkEval: what one evaluation costs, for the per-input budget of docs/performance.md.
func BenchmarkEval(b *testing.B) {
	env := newEnv(b, 1024)
	for name, src := range map[string]string{
		"when":  "hits == 3",
		"piece": "hits",
		"hash":  "hex(sha256(input))",
	} {
		b.Run(name, func(b *testing.B) {
			p, err := env.Compile(src, expr.Printable)
			if err != nil {
				b.Fatal(err)
			}
			a := newActivation(env, "PING\r\n")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Eval(a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
