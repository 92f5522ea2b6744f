package rules_test

import (
	"strconv"
	"strings"
	"testing"
)

// Every CEL entry point is type-checked when the rules are compiled, and every problem is
// an error at its field path.
func TestExpressionErrorsCarryFieldPaths(t *testing.T) {
	_, errs := compileYAML(t, `
operation:
  port: 1
  transform: {input: "input.size()", output: "output + hits"}
memory:
  connection: [{name: hits, type: int}, {name: user}, {name: my-var}]
conversation:
  greetings: {value: "hi {{= nobody }}"}
  default: {value: "{{= hits +}}"}
  rules:
  - id: 1
    mode: Sync
    regex: "^A"
    when: "hits + 1"
    updates:
    - {variable: hits, expr: "[hits]"}
    - {variable: user, expr: "user", value: "x"}
    - {variable: nope, expr: "1"}
    response: "{{= {'a': 1} }}"
  groups:
  - id: g
    rules:
    - {id: 2, mode: Sync, regex: "^B", when: "my-var == ''"}
    - {id: 3, mode: Async, when: "output == ''"}
`)
	for _, want := range []string{
		`spec.operation.transform.input: Invalid value: "input.size()": gives int, not string or bytes`,
		`spec.operation.transform.output: Invalid value: "output + hits": 1:8: found no matching overload for '_+_' applied to '(string, int)'`,
		`spec.conversation.greetings.value: Invalid value: "nobody": 1:1: undeclared reference to 'nobody'`,
		`spec.conversation.default.value: Invalid value: "hits +": 1:7: Syntax error`,
		`spec.conversation.rules[0].when: Invalid value: "hits + 1": gives int, not bool`,
		`spec.conversation.rules[0].updates[0].expr: Invalid value: "[hits]": gives list(int), not int, uint, double, bool, string or bytes`,
		`spec.conversation.rules[0].updates[1]: Invalid value: "user": set one of value, fromVariable and expr`,
		`spec.conversation.rules[0].updates[2].variable: Not found: "nope"`,
		`spec.conversation.rules[0].response: Invalid value: "{'a': 1}": gives map(string, int)`,
		`spec.conversation.groups[0].rules[0].when: Invalid value: "my-var == ''"`,
		`variable "my-var" holds '-', which CEL reads as a minus`,
		`spec.conversation.groups[0].rules[1].when: Invalid value: "output == ''": 1:1: undeclared reference to 'output'`,
	} {
		if !containsOne(errs, want) {
			t.Errorf("no error holds %q in:\n%s", want, strings.Join(errs, "\n"))
		}
	}
}

func containsOne(errs []string, want string) bool {
	for _, e := range errs {
		if strings.Contains(e, want) {
			return true
		}
	}
	return false
}

// The cost estimate follows the largest input the operation allows: the same loop is
// accepted over short inputs and refused, at its field path, over long ones.
func TestExpressionCostFollowsMaxInputSize(t *testing.T) {
	spec := func(size int) string {
		return `
operation: {port: 1, maxInputSize: ` + strconv.Itoa(size) + `}
memory: {connection: [{name: c, type: int}]}
conversation:
  rules:
  - id: 1
    mode: Sync
    regex: "."
    when: "input.split('').map(a, input.split('').filter(b, a == b).size()).exists(n, n > 3)"
`
	}
	if _, errs := compileYAML(t, spec(16)); len(errs) > 0 {
		t.Fatalf("nested loops over 16-byte inputs: %v", errs)
	}
	_, errs := compileYAML(t, spec(1024))
	if !containsOne(errs, `spec.conversation.rules[0].when: Invalid value: "input.split('')`) || !containsOne(errs, "is over the budget of 1000000 for inputs of 1024 bytes") {
		t.Fatalf("nested loops over 1024-byte inputs: %v", errs)
	}
}

// A valid spec with every entry point compiles, and a template's pieces render with memory
// and the peer as they are; a piece that fails at run time is empty and reported.
func TestExpressionTemplatesRender(t *testing.T) {
	prog, errs := compileYAML(t, `
operation: {port: 1, transform: {input: "input.trim()", output: "output + '\\r\\n'"}}
memory:
  connection: [{name: hits, type: int, default: "41"}, {name: svc.name, default: "redis"}]
  global: [{name: ratio, type: float, default: "0.5"}, {name: hits, type: string, default: "global"}]
conversation:
  greetings: {value: "{{svc.name}}/{{= svc.name.upperAscii() }} {{= hits + 1 }} {{= ratio * 3.0 }} {{= peer.ip }}:{{=peer.port}} [{{= 1 / (hits - 41) }}] {{= hex(be16(hits)) }}"}
  rules:
  - {id: 1, mode: Sync, regex: "^A", when: "hits > 40 && peer.ip.startsWith('192.')", updates: [{variable: hits, expr: "hits * 2"}]}
`)
	if len(errs) > 0 {
		t.Fatal(strings.Join(errs, "\n"))
	}
	var failed []error
	out := prog.Greetings.Template.AppendTo(nil, prog.Codec, env{p: prog, failed: &failed})
	if want := "redis/REDIS 42 1.5 192.0.2.1:4242 [] 0029"; string(out) != want {
		t.Errorf("rendered %q, want %q", out, want)
	}
	if len(failed) != 1 || !strings.Contains(failed[0].Error(), "division by zero") {
		t.Errorf("failed pieces: %v", failed)
	}
	if prog.TransformInput == nil || prog.TransformOutput == nil || prog.Rules[0].When == nil || prog.Rules[0].Updates[0].Expr == nil {
		t.Error("an entry point was not compiled")
	}
}

// Specs without CEL build no expression environment: its cost is paid only by those that
// use it.
func TestNoExpressionsNoEnvironment(t *testing.T) {
	prog, errs := compileYAML(t, `{operation: {port: 1}, conversation: {greetings: {value: "hi {{IP}}"}}}`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if prog.Expr != nil {
		t.Error("an expression environment was built for a spec without expressions")
	}
}
