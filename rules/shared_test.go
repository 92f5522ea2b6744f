package rules_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/parley-dev/parley/rules"
)

func TestSharedVariablesCompileInEveryPlace(t *testing.T) {
	p, errs := compileYAML(t, `
operation: {port: 1}
memory:
  shared: [{name: hits, type: int, default: "0"}, {name: who, type: string}, {name: open, type: bool}]
  connection: [{name: user, type: string}]
conversation:
  default: {value: "{{who}}"}
  rules:
  - {id: 1, mode: Sync, regex: "^HIT", operation: {name: NBR_SUM, inputs: [hits, "1"], outputs: [hits]}}
  - {id: 2, mode: Sync, regex: "^ME (\\w+)", captures: [{regex: "^ME (\\w+)", variable: who}], response: "{{user}}"}
  - {id: 3, mode: Sync, regex: "^OPEN", conditions: [{variable: open, value: "false"}], updates: [{variable: open, value: "true"}, {variable: user, fromVariable: who}]}
  - {id: 4, mode: Sync, regex: "^LOCAL", response: "{{user}}"}
  groups:
  - {id: g, conditions: [{variable: open, value: "true"}], rules: [{id: 5, mode: Sync, regex: "x", response: "{{hits}}"}]}`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if p.Space != rules.DefaultSpace || p.SharedOverwrite || len(p.Shared) != 3 {
		t.Fatalf("space %q overwrite %v shared %d", p.Space, p.SharedOverwrite, len(p.Shared))
	}
	want := map[int32][2][]int{1: {{0}, {0}}, 2: {nil, {1}}, 3: {{1, 2}, {2}}, 4: {nil, nil}, 5: {{0}, nil}}
	all := append(slices.Clone(p.Rules), p.Groups[0].Rules...)
	for _, r := range all {
		w := want[r.ID]
		if !slices.Equal(r.SharedReads, w[0]) || !slices.Equal(r.SharedWrites, w[1]) {
			t.Errorf("rule %d: reads %v writes %v, want %v %v", r.ID, r.SharedReads, r.SharedWrites, w[0], w[1])
		}
	}
	if !slices.Equal(p.Groups[0].SharedReads, []int{2}) {
		t.Errorf("group reads %v", p.Groups[0].SharedReads)
	}
	if got := rules.SharedOf(p.Default.Template.Vars()); !slices.Equal(got, []int{1}) {
		t.Errorf("default template reads %v", got)
	}
}

func TestSharedMemoryAndStartWhenErrorsCarryFieldPaths(t *testing.T) {
	_, errs := compileYAML(t, `
operation:
  port: 1
  startWhen:
    conditions: [{variable: user, value: "x"}, {variable: go, value: "maybe"}]
    ipFromVariable: port
    portFromVariable: nope
    when: "user + 1"
memory:
  space: "no spaces"
  sharedInit: Sometimes
  shared: [{name: go, type: bool}, {name: user, type: string}, {name: port, type: int}]
  connection: [{name: user, type: string}]`)
	for _, want := range []string{
		`spec.memory.space: Invalid value: "no spaces"`,
		`spec.memory.sharedInit: Unsupported value: "Sometimes"`,
		`spec.memory.shared[1].name: Invalid value: "user": already declared under spec.memory.connection`,
		`spec.operation.startWhen: Invalid value: "": only client mode waits`,
		`spec.operation.startWhen.conditions[0]: Invalid value: "user": startWhen reads shared variables only`,
		`spec.operation.startWhen.conditions[1].value: Invalid value: "maybe"`,
		`spec.operation.startWhen.ipFromVariable: Invalid value: "port": variable port is int`,
		`spec.operation.startWhen.portFromVariable: Not found: "nope"`,
		`spec.operation.startWhen.when: Invalid value: "user + 1"`,
	} {
		if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, want) }) {
			t.Errorf("no error %q in\n%s", want, strings.Join(errs, "\n"))
		}
	}
}

func TestStartWhenCompiles(t *testing.T) {
	p, errs := compileYAML(t, `
operation:
  mode: Client
  ip: 127.0.0.1
  port: 1
  startWhen: {conditions: [{variable: go, value: "true"}], ipFromVariable: host, portFromVariable: port}
memory:
  space: lab
  sharedInit: Overwrite
  shared: [{name: go, type: bool}, {name: host, type: string}, {name: port, type: int}]`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	sw := p.StartWhen
	if p.Space != "lab" || !p.SharedOverwrite || sw == nil || sw.IP.Name != "host" || sw.Port.Name != "port" || !slices.Equal(sw.Reads, []int{0, 1, 2}) {
		t.Fatalf("%q %v %+v", p.Space, p.SharedOverwrite, sw)
	}
}
