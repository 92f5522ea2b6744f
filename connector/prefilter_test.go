package connector_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// With enough rules for the literal prefilter (rules/prefilter.go), every rule whose regex
// matches still fires, in id order, ungrouped first, then each applying group's: words in
// either case, a rule without literals, a group chosen by its regex.
func TestManyRulesFireInIDOrderWithThePrefilter(t *testing.T) {
	var spec strings.Builder
	spec.WriteString(`
operation: {port: 1}
conversation:
  default: {value: "?;"}
  rules:
`)
	for id := 1; id <= 40; id++ {
		fmt.Fprintf(&spec, "  - {id: %d, mode: Sync, regex: \"W%02d\\\\b\", response: \"%d;\"}\n", id, id, id)
	}
	spec.WriteString(`  - {id: 41, mode: Sync, regex: "(?i)kiss", response: "41;"}
  - {id: 42, mode: Sync, regex: "^\\d+$", response: "42;"}
  groups:
  - id: g
    regex: "(?i)grp"
    rules:
    - {id: 50, mode: Sync, regex: "W07", response: "50;"}
    - {id: 51, mode: Sync, regex: ".", response: "51;"}
`)
	h := start(t, spec.String())
	p := h.dial()
	p.exchange("W39 W03 \u212aISS\n", "3;39;41;") // the Kelvin sign folds to k
	p.exchange("GRP W07 W40x\n", "7;50;51;")      // W40x is no word
	p.exchange("12345\n", "42;")                  // no literal: always run
	p.exchange("nothing here\n", "?;")
	in := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 4)
	for i, want := range []string{"[3 39 41]", "[7 50 51]", "[42]", "[]"} {
		if got := ids(in[i].Rules.Executed); got != want {
			t.Errorf("input %d executed %s, want %s", i, got, want)
		}
	}
}

// With shared variables, the rules whose shared variables an input's step must read are
// chosen through the prefilter too: a shared rule far down the list, or in a group, still
// runs its step (its counter counts) and the others are left out of it.
func TestSharedRulesWithThePrefilter(t *testing.T) {
	var spec strings.Builder
	spec.WriteString(`
operation: {port: 1, memoryUpdateWhen: Detected}
memory: {shared: [{name: count, type: int, default: "0"}, {name: other, type: int, default: "0"}]}
conversation:
  default: {value: "?;"}
  rules:
`)
	for id := 1; id <= 20; id++ {
		fmt.Fprintf(&spec, "  - {id: %d, mode: Sync, regex: \"W%02d\\\\b\", response: \"%d;\"}\n", id, id, id)
	}
	spec.WriteString(`  - {id: 21, mode: Sync, regex: "INC", response: "{{count}};", operation: {name: NBR_SUM, inputs: [count, "1"], outputs: [count]}}
  - {id: 22, mode: Sync, regex: "OTHER", response: "o{{other}};", operation: {name: NBR_SUM, inputs: [other, "1"], outputs: [other]}}
  groups:
  - id: g
    regex: "(?i)grp"
    rules:
    - {id: 50, mode: Sync, regex: "ADD", response: "g{{count}};", operation: {name: NBR_SUM, inputs: [count, "10"], outputs: [count]}}
`)
	h := start(t, spec.String())
	p := h.dial()
	p.exchange("INC\n", "1;")
	p.exchange("W20 INC\n", "20;2;")
	p.exchange("GRP ADD\n", "g12;")
	p.exchange("OTHER\n", "o1;")
	p.exchange("W01\n", "1;")
}
