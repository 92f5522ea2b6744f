package connector_test

import (
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
