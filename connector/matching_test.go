package connector_test

import (
	"strings"
	"testing"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// `$` matches before a final "\n" as in Python (Lope's rules are Python regexes), and a
// capture ending in `$` holds what Python's would: the newline stays out.
func TestDollarMatchesBeforeAFinalNewlineOnTheWire(t *testing.T) {
	h := start(t, `
operation: {port: 1}
memory: {connection: [{name: user}, {name: last}]}
conversation:
  default: {value: "?;"}
  rules:
  - {id: 1, mode: Sync, regex: "^PING$", response: "PONG;"}
  - id: 2
    mode: Sync
    regex: "^USER \\w+$"
    captures: [{regex: "^USER (\\w+)$", variable: user}, {regex: "\\w+$", variable: last}]
    response: "[{{user}}][{{last}}];"
`)
	p := h.dial()
	p.exchange("PING\n", "PONG;")
	p.exchange("PING\r\n", "?;") // only "\n" counts, as in Python
	p.exchange("USER bob\n", "[bob][bob];")
	in := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 3)
	if c := in[2].Captures; len(c) != 2 || c[0].Value != "bob" || c[1].Value != "bob" {
		t.Errorf("captures: %+v", c)
	}
}

// Captured text becomes the variable's type as Lope reads it: "1" and "yes" are false bools,
// not errors; numbers are the first number in the text ("12abc" is 12); "1_000" is 1000 as
// Python reads it.
func TestCapturedTextConvertsAsLope(t *testing.T) {
	h := start(t, `
operation: {port: 1}
memory:
  connection:
  - {name: num, type: int, default: "-1"}
  - {name: f, type: float}
  - {name: b, type: bool, default: "true"}
conversation:
  rules:
  - id: 1
    mode: Sync
    regex: "^SET "
    captures:
    - {regex: "n=(\\S*)", variable: num}
    - {regex: "f=(\\S*)", variable: f}
    - {regex: "b=(\\S*)", variable: b}
    response: "{{num}} {{f}} {{b}};"
`)
	p := h.dial()
	p.exchange("SET n=12abc f=2.5kg b=1\n", "12 2.5 false;")
	p.exchange("SET b=TRUE\n", "12 2.5 true;")
	p.exchange("SET n=1_000 f=1.2.3 b=yes\n", "1000 1.2 false;")
	p.exchange("SET n=none f=none\n", "1000 1.2 false;") // no number: Error, variables unchanged
	errs := h.Activities.WaitFor(t, v1alpha1.ActivityError, 2)
	if len(errs) != 2 || !strings.Contains(errs[0].Message, "rule 1: capture: variable num") {
		t.Errorf("errors: %+v", errs)
	}
	in := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 1)
	if c := in[0].Captures; len(c) != 3 || c[0].Value != "12abc" || c[2].Value != "1" {
		t.Errorf("captures keep the raw text: %+v", c)
	}
}
