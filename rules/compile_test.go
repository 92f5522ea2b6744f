package rules_test

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

func compileYAML(t *testing.T, specYAML string) (*rules.Program, []string) {
	t.Helper()
	var spec v1alpha1.ConversationRulesSpec
	if err := yaml.UnmarshalStrict([]byte(specYAML), &spec); err != nil {
		t.Fatalf("spec YAML: %v", err)
	}
	prog, errs := rules.Compile("r", 1, &spec)
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	return prog, msgs
}

func TestCompileErrorsCarryFieldPaths(t *testing.T) {
	cases := []struct {
		name, spec string
		want       []string // each must appear in one error
	}{
		{"port missing", `operation: {}`, []string{"spec.operation.port: Required value"}},
		{"port range", `operation: {port: 70000}`, []string{"spec.operation.port: Invalid value: 70000"}},
		{"enums", `operation: {port: 1, mode: Peer, transport: SCTP, encoding: latin-1, memoryUpdateWhen: Later, identifyBy: Port}`, []string{
			`spec.operation.identifyBy: Unsupported value: "Port": supported values: "Address", "IP"`,
			`spec.operation.mode: Unsupported value: "Peer"`, `spec.operation.transport: Unsupported value: "SCTP"`,
			`spec.operation.encoding: Unsupported value: "latin-1"`, `spec.operation.memoryUpdateWhen: Unsupported value: "Later"`,
		}},
		{"client needs target", `operation: {port: 1, mode: Client}`, []string{"spec.operation.ip: Required value"}},
		{"out of range values", `operation: {port: 1, maxInputSize: 0, connectionQueue: 70000, maxConcurrentConnections: -1, interactionTimeout: -1s}`, []string{
			"spec.operation.maxInputSize: Invalid value: 0", "spec.operation.connectionQueue: Invalid value: 70000",
			"spec.operation.maxConcurrentConnections: Invalid value: -1", "spec.operation.interactionTimeout: Invalid value",
		}},
		{"out of range peer limits", `operation: {port: 1, maxConnectionsPerPeer: 0, peerPrefixV6: 129, maxConversationAge: -1s}`, []string{
			"spec.operation.maxConnectionsPerPeer: Invalid value: 0", "spec.operation.peerPrefixV6: Invalid value: 129",
			"spec.operation.maxConversationAge: Invalid value",
		}},
		{"client auth without tls", `operation: {port: 1, tls: {clientAuthentication: true}}`, []string{"spec.operation.tls.clientAuthentication"}},
		{"amplification opt-out off a UDP server", `
operation: {port: 1}
conversation: {rules: [{id: 1, mode: Sync, regex: a, amplification: Unbounded}, {id: 2, mode: Sync, regex: b, amplification: Huge}]}`, []string{
			"spec.conversation.rules[0].amplification: Forbidden: the amplification guard bounds only a UDP server's replies",
			`spec.conversation.rules[1].amplification: Unsupported value: "Huge"`,
		}},
		{"amplification opt-out with DTLS", `
operation: {port: 1, transport: UDP, tls: {enabled: true}}
conversation: {rules: [{id: 1, mode: Sync, regex: a, amplification: Unbounded}]}`, []string{
			"spec.conversation.rules[0].amplification: Forbidden",
		}},
		{"capacityPolicy EvictIdlest on TCP", `operation: {port: 1, capacityPolicy: EvictIdlest}`, []string{
			"spec.operation.capacityPolicy: Forbidden: EvictIdlest is for UDP servers without DTLS",
		}},
		{"capacityPolicy EvictIdlest in client mode", `operation: {port: 1, ip: 127.0.0.1, mode: Client, transport: UDP, capacityPolicy: EvictIdlest}`, []string{
			"spec.operation.capacityPolicy: Forbidden: EvictIdlest is for UDP servers without DTLS",
		}},
		{"capacityPolicy EvictIdlest with DTLS", `operation: {port: 1, transport: UDP, tls: {enabled: true}, capacityPolicy: EvictIdlest}`, []string{
			"spec.operation.capacityPolicy: Forbidden: EvictIdlest is for UDP servers without DTLS",
		}},
		{"capacityPolicy unknown", `operation: {port: 1, transport: UDP, capacityPolicy: EvictOldest}`, []string{
			`spec.operation.capacityPolicy: Unsupported value: "EvictOldest": supported values: "Refuse", "EvictIdlest"`,
		}},
		{"bad regex", `
operation: {port: 1}
conversation: {rules: [{id: 1, mode: Sync, regex: "a(b"}]}`, []string{"spec.conversation.rules[0].regex: Invalid value: \"a(b\""}},
		{"lookaround", `
operation: {port: 1}
conversation: {rules: [{id: 1, mode: Sync, regex: "(?<=USER )\\w+"}]}`, []string{"spec.conversation.rules[0].regex", "lookarounds are not supported"}},
		{"backreference", `
operation: {port: 1}
conversation: {rules: [{id: 1, mode: Sync, regex: "(a)\\1"}]}`, []string{"spec.conversation.rules[0].regex", "backreferences are not supported"}},
		{"bad base64", `
operation: {port: 1}
conversation:
  greetings: {value: "not base64!", base64: true}
  rules: [{id: 1, mode: Sync, regex: "***", regexBase64: true, response: "%%", responseBase64: true}]`, []string{
			"spec.conversation.greetings.value", "not valid base64", "spec.conversation.rules[0].regex", "spec.conversation.rules[0].response",
		}},
		{"duplicate ids across rules and groups", `
operation: {port: 1}
conversation:
  rules: [{id: 1, mode: Sync, regex: a}, {id: 0, mode: Sync, regex: b}]
  groups: [{id: g, rules: [{id: 1, mode: Sync, regex: c}]}, {id: g, rules: []}]`, []string{
			"spec.conversation.groups[0].rules[0].id: Duplicate value: 1", "spec.conversation.rules[1].id: Invalid value: 0",
			`spec.conversation.groups[1].id: Duplicate value: "g"`,
		}},
		{"modes and regexes", `
operation: {port: 1}
conversation: {rules: [{id: 1, mode: Sync}, {id: 2, mode: Async, regex: x}, {id: 3, mode: sync, regex: x}, {id: 4, regex: x}]}`, []string{
			"spec.conversation.rules[0].regex: Required value", "spec.conversation.rules[1].regex: Invalid value",
			`spec.conversation.rules[2].mode: Unsupported value: "sync"`, "spec.conversation.rules[3].mode: Required value",
		}},
		{"triggers to unknown, sync or disabled rules", `
operation: {port: 1}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: a, trigger: [{ruleID: 9}, {ruleID: 2}, {ruleID: 3}]}
  - {id: 2, mode: Sync, regex: b}
  - {id: 3, mode: Async, enabled: false}
  - id: 4
    mode: Sync
    regex: c
    asyncSwitch: {options: [{trigger: [{ruleID: 8}]}], default: [{ruleID: 7}]}
    asyncLoop: {rules: [{ruleID: 6, delay: 1s}]}
  - {id: 5, mode: Sync, regex: d, onStart: {}}`, []string{
			"spec.conversation.rules[0].trigger[0].ruleID: Not found: 9", "spec.conversation.rules[0].trigger[1].ruleID: Invalid value: 2",
			"is a Sync rule", "spec.conversation.rules[0].trigger[2].ruleID: Invalid value: 3", "rule is disabled",
			"spec.conversation.rules[3].asyncSwitch.options[0].trigger[0].ruleID: Not found: 8",
			"spec.conversation.rules[3].asyncSwitch.default[0].ruleID: Not found: 7",
			"spec.conversation.rules[3].asyncLoop.rules[0].ruleID: Not found: 6",
			"spec.conversation.rules[4].onStart",
		}},
		{"unbounded zero-delay loop", `
operation: {port: 1}
conversation: {rules: [{id: 1, mode: Sync, regex: a, asyncLoop: {rules: [{ruleID: 2}]}}, {id: 2, mode: Async}]}`, []string{
			"spec.conversation.rules[0].asyncLoop.rules[0].delay",
		}},
		{"zero-delay loop beyond the chain bound", `
operation: {port: 1}
conversation: {rules: [{id: 1, mode: Sync, regex: a, asyncLoop: {rules: [{ruleID: 2, maxIterations: 100}]}}, {id: 2, mode: Async}]}`, []string{
			"spec.conversation.rules[0].asyncLoop.rules[0].maxIterations: Invalid value: 100", "at most 64 iterations",
		}},
		{"zero-delay cycles", `
operation: {port: 1}
memory: {connection: [{name: more, type: bool}]}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "^GO", trigger: [{ruleID: 10}]}
  - {id: 10, mode: Async, response: "x", trigger: [{ruleID: 10}, {ruleID: 10}]}
  - {id: 20, mode: Hybrid, regex: a, trigger: [{ruleID: 21, delay: 0s}]}
  - {id: 21, mode: Async, asyncSwitch: {options: [{conditions: [{variable: more, value: "true"}], trigger: [{ruleID: 22}]}]}}
  - {id: 22, mode: Async, asyncLoop: {rules: [{ruleID: 20, maxIterations: 3}]}}`, []string{
			"spec.conversation.rules[1].trigger[0]: Forbidden: a cycle 10 → 10 with no delay",
			"spec.conversation.rules[1].trigger[1]: Forbidden: a cycle 10 → 10 with no delay",
			"spec.conversation.rules[4].asyncLoop.rules[0]: Forbidden: a cycle 20 → 21 → 22 → 20 with no delay",
		}},
		{"unknown template variables", `
operation: {port: 1}
memory: {connection: [{name: user}]}
conversation:
  greetings: {value: "hi {{user}} {{ nobody }}"}
  rules: [{id: 1, mode: Sync, regex: a, response: "{{IP}}:{{PORT}} {{missing}}"}]`, []string{
			`spec.conversation.greetings.value: Invalid value: "{{nobody}}"`, `spec.conversation.rules[0].response: Invalid value: "{{missing}}"`,
		}},
		{"variables", `
operation: {port: 1}
memory:
  global: [{name: IP}, {name: "9lives"}, {name: a, type: decimal}]
  connection:
  - {name: x, type: int, default: "1.5"}
  - {name: x}
  - {name: f, type: float, default: "abc"}
  - {name: b, type: bool, default: "maybe"}
  - {name: g, type: int, generate: {min: "10", max: "1"}}
  - {name: s, generate: {length: 0, charset: Emoji}}`, []string{
			`spec.memory.global[0].name: Invalid value: "IP": is a reserved name`, `spec.memory.global[1].name: Invalid value: "9lives"`,
			`spec.memory.global[2].type: Unsupported value: "decimal"`, `spec.memory.connection[0].default: Invalid value: "1.5"`,
			`spec.memory.connection[1].name: Duplicate value: "x"`, `spec.memory.connection[2].default`, `spec.memory.connection[3].default`,
			`spec.memory.connection[4].generate.max`, `spec.memory.connection[5].generate.length`, `spec.memory.connection[5].generate.charset: Unsupported value: "Emoji"`,
		}},
		{"conditions, updates, captures: names and type mismatches", `
operation: {port: 1}
memory: {connection: [{name: num, type: int}, {name: s}]}
conversation:
  rules:
  - id: 1
    mode: Sync
    regex: a
    conditions: [{variable: num, value: "one"}, {variable: ghost, value: "1"}, {variable: num, value: "1", fromVariable: s}]
    updates: [{variable: num, fromVariable: phantom}, {variable: "", value: "1"}]
    captures: [{regex: "(x", variable: s}, {regex: x, variable: nope}]`, []string{
			`spec.conversation.rules[0].conditions[0].value: Invalid value: "one": variable num is int`,
			`spec.conversation.rules[0].conditions[1].variable: Not found: "ghost"`,
			`spec.conversation.rules[0].conditions[2]: Invalid value: "1": set value or fromVariable, not both`,
			`spec.conversation.rules[0].updates[0].fromVariable: Not found: "phantom"`,
			`spec.conversation.rules[0].updates[1].variable: Required value`,
			`spec.conversation.rules[0].captures[0].regex`, `spec.conversation.rules[0].captures[1].variable: Not found: "nope"`,
		}},
		{"operations", `
operation: {port: 1}
memory: {connection: [{name: n, type: int}]}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: a, operation: {name: NBR_FROBNICATE, inputs: [n], outputs: [n]}}
  - {id: 2, mode: Sync, regex: b, operation: {name: NBR_INVERSE_SIGN, inputs: [n, n], outputs: [n, n]}}
  - {id: 3, mode: Sync, regex: c, operation: {name: STR_MATCH, inputs: [EXT_IN, "a(b"], outputs: [undeclared]}}`, []string{
			`spec.conversation.rules[0].operation.name: Unsupported value: "NBR_FROBNICATE"`,
			"spec.conversation.rules[1].operation.inputs: Invalid value: 2", "spec.conversation.rules[1].operation.outputs: Invalid value: 2",
			`spec.conversation.rules[2].operation.inputs[1]: Invalid value: "a(b"`,
			`spec.conversation.rules[2].operation.outputs[0]: Not found: "undeclared"`,
		}},
		{"sessions", `
operation: {port: 1, session: {enabled: true, key: "", updateWhen: Later, generate: {length: 0}}}
memory: {connection: [{name: v}]}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: a, sessionUpdate: {value: x, generate: true}}
  - {id: 2, mode: Sync, regex: b, sessionUpdate: {fromVariable: ghost}}`, []string{
			"spec.operation.session.key: Required value", `spec.operation.session.updateWhen: Unsupported value: "Later"`,
			"spec.operation.session.generate.length: Invalid value: 0",
			"spec.conversation.rules[0].sessionUpdate: Invalid value", "exactly one of value, fromVariable or generate",
			`spec.conversation.rules[1].sessionUpdate.fromVariable: Not found: "ghost"`,
		}},
		{"generated session id longer than it reads back", `
operation: {port: 1, session: {enabled: true, key: sid, generate: {length: 257}}}`, []string{
			"spec.operation.session.generate.length: Invalid value: 257", "at most 256 bytes",
		}},
		{"session names need operation.session", `
operation: {port: 1}
memory: {connection: [{name: v}]}
conversation:
  greetings: {value: "{{SESSION_VALUE}}"}
  rules: [{id: 1, mode: Sync, regex: a, sessionUpdate: {value: x}, operation: {name: STR_UPPER, inputs: [SESSION_KEY], outputs: [v]}}]`, []string{
			`spec.conversation.greetings.value: Invalid value: "{{SESSION_VALUE}}"`, "spec.conversation.rules[0].sessionUpdate: Invalid value",
			"needs operation.session", `spec.conversation.rules[0].operation.inputs[0]: Invalid value: "SESSION_KEY"`,
		}},
		{"reconnectBefore outside client mode", `
operation: {port: 1}
conversation: {rules: [{id: 1, mode: Sync, regex: a, reconnectBefore: true}]}`, []string{"spec.conversation.rules[0].reconnectBefore"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prog, errs := compileYAML(t, tc.spec)
			if prog != nil {
				t.Fatal("invalid rules compiled")
			}
			all := strings.Join(errs, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("missing %q in:\n%s", w, all)
				}
			}
		})
	}
}

func TestCompileDefaultsAndOrder(t *testing.T) {
	prog, errs := compileYAML(t, `
operation: {port: 80}
conversation:
  greetings: {value: "hi"}
  default: {value: "?", enabled: false}
  rules:
  - {id: 3, mode: Sync, regex: a}
  - {id: 1, mode: Hybrid, regex: a}
  - {id: 2, mode: Async}
  - {id: 4, mode: Sync, regex: a, enabled: false}
`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if prog.Mode != v1alpha1.ModeServer || prog.Transport != v1alpha1.TransportTCP || prog.Encoding != v1alpha1.EncodingUTF8 ||
		prog.ConnectionQueue != 0 || prog.MaxInputSize != 1024 || prog.MaxConnections != 5 || !prog.RuleClosing || prog.UpdateOnDetected {
		t.Errorf("defaults: %+v", prog)
	}
	if prog.Greetings == nil || prog.Default != nil {
		t.Error("basic rules: present means enabled; enabled: false disables")
	}
	if len(prog.Rules) != 2 || prog.Rules[0].ID != 1 || prog.Rules[1].ID != 3 {
		t.Errorf("matchable rules: %v", prog.Rules)
	}
	if prog.RuleCount != 4 {
		t.Errorf("RuleCount %d", prog.RuleCount)
	}
	if !strings.HasPrefix(prog.Ref.Hash, "sha256:") || len(prog.Ref.Hash) != 71 {
		t.Errorf("hash %q", prog.Ref.Hash)
	}
}

func TestHashFollowsTheSpec(t *testing.T) {
	a, _ := compileYAML(t, `{operation: {port: 1}, conversation: {greetings: {value: a}}}`)
	b, _ := compileYAML(t, `{conversation: {greetings: {value: a}}, operation: {port: 1}}`)
	c, _ := compileYAML(t, `{operation: {port: 1}, conversation: {greetings: {value: b}}}`)
	if a.Ref.Hash != b.Ref.Hash || a.Ref.Hash == c.Ref.Hash {
		t.Errorf("hashes: %s %s %s", a.Ref.Hash, b.Ref.Hash, c.Ref.Hash)
	}
}

func TestTemplatesAreOnePass(t *testing.T) {
	prog, errs := compileYAML(t, `
operation: {port: 1}
memory: {connection: [{name: v, default: "{{v}}"}]}
conversation: {greetings: {value: "[{{v}}] {{ not a name }} {{"}}`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	out := prog.Greetings.Template.AppendTo(nil, prog.Codec, env{p: prog})
	if string(out) != "[{{v}}] {{ not a name }} {{" {
		t.Errorf("rendered %q", out)
	}
}

// A cycle of schedules with a delay somewhere repeats at that pace: it is valid.
func TestCyclesWithADelayCompile(t *testing.T) {
	_, errs := compileYAML(t, `
operation: {port: 1}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "^GO", trigger: [{ruleID: 10}, {ruleID: 11}]}
  - {id: 10, mode: Async, response: "tick", trigger: [{ruleID: 10, delay: 1s}]}
  - {id: 11, mode: Async, trigger: [{ruleID: 12}], asyncLoop: {rules: [{ruleID: 12, maxIterations: 3}]}}
  - {id: 12, mode: Async, asyncSwitch: {options: [{trigger: [{ruleID: 13}]}], default: [{ruleID: 11, delay: 10ms}]}}
  - {id: 13, mode: Async}`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
}

func TestAmplificationOptOutOnUDPServer(t *testing.T) {
	prog, errs := compileYAML(t, `
operation: {port: 53, transport: UDP}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: a, amplification: Unbounded}
  - {id: 2, mode: Sync, regex: b, amplification: Bounded}
  - {id: 3, mode: Sync, regex: c}
`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if !prog.Rules[0].Unbounded || prog.Rules[1].Unbounded || prog.Rules[2].Unbounded {
		t.Errorf("only rule 1 opts out: %v %v %v", prog.Rules[0].Unbounded, prog.Rules[1].Unbounded, prog.Rules[2].Unbounded)
	}
}

func TestCapacityPolicy(t *testing.T) {
	for _, tc := range []struct {
		operation string
		evict     bool
	}{
		{`{port: 53, transport: UDP}`, false},
		{`{port: 53, transport: UDP, capacityPolicy: Refuse}`, false},
		{`{port: 53, transport: UDP, capacityPolicy: EvictIdlest}`, true},
		{`{port: 80, capacityPolicy: Refuse}`, false},
	} {
		prog, errs := compileYAML(t, "operation: "+tc.operation)
		if len(errs) > 0 {
			t.Errorf("%s: %v", tc.operation, errs)
			continue
		}
		if prog.EvictIdlest != tc.evict {
			t.Errorf("%s: EvictIdlest %v, want %v", tc.operation, prog.EvictIdlest, tc.evict)
		}
	}
}
