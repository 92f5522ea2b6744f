package ops

import (
	"fmt"

	"github.com/parley-dev/parley/rules/value"
)

func logicOps() []Op {
	return []Op{
		fixed("LGC_NOT", 1, -1, logic(func(n, trues int) bool { return trues == 0 })),
		variadic("LGC_AND", 1, logic(func(n, trues int) bool { return trues == n })),
		variadic("LGC_OR", 1, logic(func(n, trues int) bool { return trues > 0 })),
		variadic("LGC_XOR", 1, logic(func(n, trues int) bool { return trues%2 == 1 })),
		variadic("LGC_NAND", 1, logic(func(n, trues int) bool { return trues != n })),
		variadic("LGC_NOR", 1, logic(func(n, trues int) bool { return trues == 0 })),
	}
}

// logic reads every input as a bool (all of them, so a bad one is reported even when the
// answer is already known) and decides from how many are true.
func logic(f func(n, trues int) bool) func(Env, []value.Value) (value.Value, error) {
	return func(_ Env, in []value.Value) (value.Value, error) {
		trues := 0
		for i, v := range in {
			b, err := v.Truth()
			if err != nil {
				return value.Value{}, fmt.Errorf("input %d: %w", i+1, err)
			}
			if b {
				trues++
			}
		}
		return value.OfBool(f(len(in), trues)), nil
	}
}
