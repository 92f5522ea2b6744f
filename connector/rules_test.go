package connector_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
)

func TestBasicRules(t *testing.T) {
	h := start(t, `
operation: {port: 1}
conversation:
  greetings: {value: "+OK ready\r\n"}
  default:   {value: "-ERR unknown\r\n"}
  empty:     {value: "-ERR empty\r\n", alert: true}
  rules:
  - {id: 1, mode: Sync, regex: "(?i)^PING", response: "+PONG\r\n"}
`)
	p := h.dial()
	p.expect("+OK ready\r\n")
	p.exchange("ping\r\n", "+PONG\r\n")
	p.exchange("HELLO\r\n", "-ERR unknown\r\n")
	p.exchange("\r\n", "-ERR empty\r\n")

	greeted := h.Activities.WaitFor(t, v1alpha1.ActivityGreeted, 1)[0]
	if greeted.Rules.Basic != "greetings" || greeted.Output.Bytes != int32(len("+OK ready\r\n")) {
		t.Errorf("greeting activity: %+v %+v", greeted.Rules, greeted.Output)
	}
	inputs := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 3)
	if got := ids(inputs[0].Rules.Executed); got != "[1]" {
		t.Errorf("PING executed %s", got)
	}
	if inputs[0].Input.Text != "ping\r\n" || inputs[0].Input.Base64 != "cGluZw0K" || inputs[0].Input.Bytes != 6 {
		t.Errorf("input record: %+v", inputs[0].Input)
	}
	if inputs[1].Rules.Basic != "default" || len(inputs[1].Rules.Executed) != 0 {
		t.Errorf("default: %+v", inputs[1].Rules)
	}
	if inputs[2].Rules.Basic != "empty" || !inputs[2].Alert {
		t.Errorf("empty: %+v alert=%v", inputs[2].Rules, inputs[2].Alert)
	}
	for _, a := range inputs {
		if a.Connection == nil || a.Connection.ID != "c-000001" || a.Connection.Transport != "TCP" ||
			!strings.HasPrefix(a.Connection.Peer, "127.0.0.1:") {
			t.Errorf("connection ref: %+v", a.Connection)
		}
		if a.RulesRef == nil || a.RulesRef.Name != "test-rules" || !strings.HasPrefix(a.RulesRef.Hash, "sha256:") {
			t.Errorf("rules ref: %+v", a.RulesRef)
		}
		if a.Connector != "test" || a.Time.IsZero() {
			t.Errorf("connector/time: %q %v", a.Connector, a.Time)
		}
	}
}

func TestDisabledBasicRulesSendNothing(t *testing.T) {
	h := start(t, `
operation: {port: 1}
conversation:
  greetings: {value: "hello\r\n", enabled: false}
  default: {value: ""}
  rules:
  - {id: 1, mode: Sync, regex: "^A", response: "a\r\n", enabled: false}
  - {id: 2, mode: Sync, regex: "^B", response: "b\r\n"}
`)
	p := h.dial()
	h.quiet(p, "A\r\n", 1)
	p.exchange("B\r\n", "b\r\n") // nothing came before b: no greeting, no reply to A
	in := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 2)
	if in[0].Rules.Basic != "default" || in[0].Output.Bytes != 0 {
		t.Errorf("A: default with empty value runs and sends nothing: %+v %+v", in[0].Rules, in[0].Output)
	}
	if len(h.Activities.Of(v1alpha1.ActivityGreeted)) != 0 {
		t.Error("a disabled greeting was recorded")
	}
}

func TestSeveralRulesAnswerInIDOrderThenGroups(t *testing.T) {
	h := start(t, `
operation: {port: 1}
memory:
  connection: [{name: admin, type: bool}]
conversation:
  rules:
  - {id: 30, mode: Sync, regex: "X", response: "thirty;"}
  - {id: 4, mode: Sync, regex: "X", response: "four;"}
  - {id: 10, mode: Hybrid, regex: "X", response: "ten;"}
  - {id: 5, mode: Sync, regex: "nomatch", response: "never;"}
  - {id: 6, mode: Sync, regex: "^LOGIN", response: "ok;", updates: [{variable: admin, value: "true"}]}
  groups:
  - id: by-regex
    regex: "^X"
    rules:
    - {id: 2, mode: Sync, regex: "X", response: "g2;"}
    - {id: 1, mode: Sync, regex: "X", response: "g1;"}
  - id: by-condition
    regex: "^ADMIN"
    conditions: [{variable: admin, value: "true"}]
    rules:
    - {id: 50, mode: Sync, regex: "X", response: "admin;"}
`)
	p := h.dial()
	p.exchange("X\r\n", "four;ten;thirty;g1;g2;")
	p.exchange("LOGIN\r\n", "ok;")
	// the group's regex does not match "zX", but its condition now holds
	p.exchange("zX\r\n", "four;ten;thirty;admin;")
	in := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 3)
	if got := ids(in[0].Rules.Executed); got != "[4 10 30 1 2]" {
		t.Errorf("executed %s", got)
	}
}

func TestOnlyFirstHit(t *testing.T) {
	h := start(t, `
operation: {port: 1, onlyFirstHit: true}
conversation:
  rules:
  - {id: 9, mode: Sync, regex: "X", response: "nine;"}
  - {id: 3, mode: Sync, regex: "X", response: "three;"}
  groups:
  - {id: g, rules: [{id: 1, mode: Sync, regex: "Y", response: "g;"}]}
`)
	p := h.dial()
	p.exchange("X\r\n", "three;")
	p.exchange("XY\r\n", "three;")
	p.exchange("Y\r\n", "g;")
}

func TestCapturesConditionsUpdatesAndTemplates(t *testing.T) {
	h := start(t, `
operation: {port: 1, reportMemory: true}
memory:
  global: [{name: logins, type: int, default: "0", report: true}]
  connection:
  - {name: user, type: string, report: true}
  - {name: pass, type: string}
  - {name: whole, type: string}
  - {name: stage, type: string, default: "login"}
  - {name: expected, type: string, default: "letmein"}
conversation:
  rules:
  - id: 1
    mode: Sync
    regex: "^USER "
    conditions: [{variable: stage, value: login}]
    captures:
    - {regex: "USER (\\S+)", variable: user}
    - {regex: "USER \\S+", variable: whole}
    updates: [{variable: stage, value: password}]
    response: "331 password for {{user}} ({{whole}}) from {{IP}}\r\n"
  - id: 2
    mode: Sync
    regex: "^PASS "
    conditions: [{variable: stage, value: password}]
    captures: [{regex: "PASS (\\S+)", variable: pass}]
    response: "checking\r\n"
    trigger: [{ruleID: 3}]
  - id: 3
    mode: Async
    conditions: [{variable: pass, fromVariable: expected}]
    updates: [{variable: stage, value: shell}]
    operation: {name: NBR_SUM, inputs: [logins, "1"], outputs: [logins]}
    response: "230 welcome {{user}}, login #{{logins}}\r\n"
`)
	p := h.dial()
	h.quiet(p, "PASS nope\r\n", 1) // wrong stage: nothing fires
	p.exchange("USER {{pass}}\r\n", "331 password for {{pass}} (USER {{pass}}) from 127.0.0.1\r\n")
	h.quiet(p, "USER again\r\n", 3) // stage moved on
	p.exchange("PASS wrong\r\n", "checking\r\n")
	p.expectSilence(200 * time.Millisecond)
	p.exchange("PASS letmein\r\n", "checking\r\n")
	// Executed (the default): the operation runs after the reply, so the count shows 0.
	p.expect("230 welcome {{pass}}, login #0\r\n")

	in := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 5)
	caps := in[1].Captures
	if len(caps) != 2 || caps[0].Variable != "user" || caps[0].Value != "{{pass}}" || caps[1].Value != "USER {{pass}}" || caps[0].Rule != 1 {
		t.Errorf("captures: %+v", caps)
	}
	async := h.Activities.WaitFor(t, v1alpha1.ActivityAsync, 1)
	if got := ids(async[0].Rules.Async); got != "[3]" {
		t.Errorf("async ran %s", got)
	}
	if m := async[0].Memory; m == nil || m.Global["logins"] != "1" || m.Connection["user"] != "{{pass}}" {
		t.Errorf("reported memory: %+v", m)
	} else if _, leaked := m.Connection["pass"]; leaked {
		t.Error("an unreported variable was reported")
	}
	if got := ids(in[3].Rules.Scheduled); got != "[3]" {
		t.Errorf("scheduled %s", got)
	}
}

func TestMemoryUpdateWhenDetected(t *testing.T) {
	h := start(t, `
operation: {port: 1, memoryUpdateWhen: Detected}
memory:
  connection: [{name: num, type: int, default: "0"}, {name: s, type: string, default: "old"}]
conversation:
  rules:
  - id: 1
    mode: Sync
    regex: "GO"
    updates: [{variable: s, value: "new"}]
    operation: {name: NBR_SUM, inputs: [num, "10"], outputs: [num]}
    response: "{{s}} {{num}}\r\n"
`)
	p := h.dial()
	p.exchange("GO\r\n", "new 10\r\n")
	p.exchange("GO\r\n", "new 20\r\n")
}

func TestGlobalMemorySharedConnectionMemoryFresh(t *testing.T) {
	h := start(t, `
operation: {port: 1, identifyBy: Address}
memory:
  global: [{name: total, type: int}]
  connection: [{name: mine, type: int}]
conversation:
  rules:
  - id: 1
    mode: Sync
    regex: "INC"
    operation: {name: NBR_SUM, inputs: [total, "1"], outputs: [total]}
    trigger: [{ruleID: 2}]
  - {id: 2, mode: Async, operation: {name: NBR_SUM, inputs: [mine, "1"], outputs: [mine]}, trigger: [{ruleID: 3}]}
  - {id: 3, mode: Async, response: "total={{total}} mine={{mine}}\r\n"}
`)
	a, b := h.dial(), h.dial()
	a.exchange("INC\r\n", "total=1 mine=1\r\n")
	a.exchange("INC\r\n", "total=2 mine=2\r\n")
	b.exchange("INC\r\n", "total=3 mine=1\r\n")
}

func TestGeneratedValues(t *testing.T) {
	h := start(t, `
operation: {port: 1, identifyBy: Address}
memory:
  connection:
  - {name: token, type: string, generate: {length: 16, charset: HexUpper}}
  - {name: pin, type: int, generate: {min: "1000", max: "1009"}}
  - {name: flag, type: bool, generate: {}}
conversation:
  greetings: {value: "{{token}} {{pin}} {{flag}}\r\n"}
`)
	re := regexp.MustCompile(`^[0-9A-F]{16} 100[0-9] (true|false)\r\n$`)
	seen := map[string]bool{}
	for range 5 {
		p := h.dial()
		line, err := p.r.ReadString('\n')
		if err != nil || !re.MatchString(line) {
			t.Fatalf("greeting %q (err %v) does not match %s", line, err, re)
		}
		seen[line[:16]] = true
	}
	if len(seen) < 5 {
		t.Errorf("generated tokens repeat: %v", seen)
	}
}

func TestOperationFailureRecordsErrorAndKeepsOutputs(t *testing.T) {
	h := start(t, `
operation: {port: 1}
memory:
  connection: [{name: q, type: float, default: "7.5"}, {name: num, type: int, default: "3"}]
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "DIV", operation: {name: NBR_DIVIDE, inputs: [q, "0"], outputs: [q]}}
  - {id: 2, mode: Sync, regex: "BAD", operation: {name: NBR_SUM, inputs: [num, EXT_IN], outputs: [num]}}
  - {id: 3, mode: Sync, regex: "SHOW", response: "q={{q}} n={{num}}\r\n"}
`)
	p := h.dial()
	h.quiet(p, "DIV\r\n", 1)
	h.quiet(p, "BAD\r\n", 2)
	errs := h.Activities.WaitFor(t, v1alpha1.ActivityError, 2)
	if !strings.HasPrefix(errs[0].Message, "rule 1: NBR_DIVIDE: ") || strings.Count(errs[0].Message, "NBR_DIVIDE") != 1 ||
		!strings.HasPrefix(errs[1].Message, "rule 2: NBR_SUM: ") {
		t.Errorf("error messages: %q / %q", errs[0].Message, errs[1].Message)
	}
	if errs[0].Connection == nil || errs[0].Connection.ID != "c-000001" {
		t.Errorf("error not tied to its connection: %+v", errs[0].Connection)
	}
	p.exchange("SHOW\r\n", "q=7.5 n=3\r\n")
}
