package rules_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

func lint(t *testing.T, specYAML string) []string {
	t.Helper()
	var spec v1alpha1.ConversationRulesSpec
	if err := yaml.UnmarshalStrict([]byte(specYAML), &spec); err != nil {
		t.Fatal(err)
	}
	p, errs := rules.Compile("r", 1, &spec)
	if len(errs) > 0 {
		t.Fatalf("compile: %v", errs)
	}
	var out []string
	for _, w := range rules.Lint(&spec, p) {
		out = append(out, w.String())
	}
	return out
}

func TestLint(t *testing.T) {
	for _, tc := range []struct {
		name, spec string
		want       []string // each must appear in one warning; none: no warning at all
	}{
		{"clean", `{operation: {port: 1}, conversation: {greetings: {value: "hi"}, rules: [{id: 1, mode: Sync, regex: "^PING$", response: "PONG"}]}}`, nil},
		{"ascii cannot hold é", `{operation: {port: 1, encoding: ascii}, conversation: {rules: [{id: 1, mode: Sync, regex: "^café", response: "x"}]}}`,
			[]string{`spec.conversation.rules[0].regex: 'é' can never be in an input decoded as ascii`}},
		{"binary holds bytes only", `{operation: {port: 1, encoding: binary}, conversation: {groups: [{id: g, regex: "€", rules: [{id: 1, mode: Sync, regex: "x", response: "x"}]}]}}`,
			[]string{`spec.conversation.groups[0].regex: '€' can never be in an input decoded as binary`}},
		{"alternatives and classes do not warn", `{operation: {port: 1, encoding: ascii}, conversation: {rules: [{id: 1, mode: Sync, regex: "é|e|[é]?", response: "x"}]}}`, nil},
		{"longer than an input", `{operation: {port: 1, maxInputSize: 4}, conversation: {rules: [{id: 1, mode: Sync, regex: "HELLO", response: "x"}]}}`,
			[]string{"spec.conversation.rules[0].regex: matches at least 5 characters but an input holds at most 4 bytes"}},
		{"UDP greeting held back", `{operation: {port: 1, transport: UDP}, conversation: {greetings: {value: "` + strings.Repeat("x", 200) + `"}}}`,
			[]string{"spec.conversation.greetings.value: a 200-byte greeting goes out only to peers whose first datagram has at least 67 bytes"}},
		{"small UDP greeting", `{operation: {port: 1, transport: UDP}, conversation: {greetings: {value: "hello"}}}`, nil},
		{"closeAfterReplying by address", `{operation: {port: 1, interactionTimeout: 30s, socket: {closeAfterReplying: true}}}`,
			[]string{"spec.operation.socket.closeAfterReplying: each request comes on a new socket, and with identifyBy: Address"}},
		{"closeAfterReplying without a timeout", `{operation: {port: 1, identifyBy: IP, socket: {closeAfterReplying: true}}}`,
			[]string{"spec.operation.socket.closeAfterReplying: without interactionTimeout"}},
		{"small backlog, many peers", `{operation: {port: 1, connectionQueue: 5, maxConcurrentConnections: 100}}`,
			[]string{"spec.operation.connectionQueue: a backlog of 5 cannot hold a burst of the 100 peers"}},
		{"backlog as large as the cap", `{operation: {port: 1, connectionQueue: 100, maxConcurrentConnections: 100}}`, nil},
		{"client mode has no backlog", `{operation: {port: 1, ip: h, mode: Client, connectionQueue: 1, maxConcurrentConnections: 100}}`, nil},
		{"closeAfterReplying that works", `{operation: {port: 1, identifyBy: IP, interactionTimeout: 30s, socket: {closeAfterReplying: true}}}`, nil},
		{"$ before a CRLF delimiter", `{operation: {port: 1, framing: {type: Delimiter, delimiter: "\r\n"}}, conversation: {rules: [{id: 1, mode: Sync, regex: "^QUIT$", response: "x"}]}}`,
			[]string{`spec.conversation.rules[0].regex: "QUIT" must end right at $ (the end of the input, or before a final "\n"), but with Delimiter framing every input ends with its delimiter ("\r\n")`}},
		{"\\z, case folded, in an alternative", `{operation: {port: 1, framing: {type: Delimiter, delimiter: "\n"}}, conversation: {rules: [{id: 1, mode: Sync, regex: "(?i)^PING\\n$|^(QUIT)\\z", response: "x"}]}}`,
			[]string{`spec.conversation.rules[0].regex: "QUIT" must end right at \z (the end of the input)`}},
		{"$ before a LF delimiter matches", `{operation: {port: 1, framing: {type: Delimiter, delimiter: "\n"}}, conversation: {rules: [{id: 1, mode: Sync, regex: "(?i)^quit$", response: "x"}]}}`, nil},
		{"the delimiter before the anchor", `{operation: {port: 1, framing: {type: Delimiter, delimiter: "\r\n"}}, conversation: {rules: [{id: 1, mode: Sync, regex: "^QUIT\\r\\n\\z|^NOOP\\r?$|\\n$|(?m)^RSET$", response: "x"}]}}`, nil},
		{"a literal ending as the delimiter does", `{operation: {port: 1, framing: {type: Delimiter, delimiter: "\r\n.\r\n"}}, conversation: {rules: [{id: 1, mode: Sync, regex: "\\n\\.\\r\\n$", response: "x"}]}}`, nil},
		{"one rule framing is not a Delimiter", `{operation: {port: 1, framing: {type: Delimiter, delimiter: "\r\n"}}, conversation: {rules: [{id: 1, mode: Sync, regex: "^QUIT$", response: "x", framing: {type: Read}}]}}`, nil},
		{"every delimiter of the rule framings", `{operation: {port: 1, framing: {type: Delimiter, delimiter: "\r\n"}}, conversation: {rules: [{id: 1, mode: Sync, regex: "^DATA$", response: "x", framing: {type: Delimiter, delimiter: ";"}}, {id: 2, mode: Sync, regex: "x;$", response: "y"}]}}`,
			[]string{`spec.conversation.rules[0].regex: "DATA" must end right at $ (the end of the input, or before a final "\n"), but with Delimiter framing every input ends with its delimiter ("\r\n", ";")`}},
		{"Read framing ends inputs anywhere", `{operation: {port: 1}, conversation: {rules: [{id: 1, mode: Sync, regex: "^QUIT$", response: "x"}]}}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := lint(t, tc.spec)
			if len(tc.want) == 0 && len(got) > 0 {
				t.Errorf("unexpected warnings: %q", got)
			}
			for _, w := range tc.want {
				found := false
				for _, g := range got {
					found = found || strings.Contains(g, w)
				}
				if !found {
					t.Errorf("no warning %q in %q", w, got)
				}
			}
		})
	}
}

func TestAnnotateNamesRuleIDs(t *testing.T) {
	var spec v1alpha1.ConversationRulesSpec
	if err := yaml.UnmarshalStrict([]byte(`{conversation: {rules: [{id: 7}, {id: 42}], groups: [{id: admin, rules: [{id: 3}, {id: 9}]}]}}`), &spec); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"spec.conversation.rules[1].regex":                 "spec.conversation.rules[1] (id 42).regex",
		"spec.conversation.rules[0].trigger[0].ruleID":     "spec.conversation.rules[0] (id 7).trigger[0].ruleID",
		"spec.conversation.groups[0].rules[1].captures[2]": "spec.conversation.groups[0] (id admin).rules[1] (id 9).captures[2]",
		"spec.conversation.rules[5].regex":                 "spec.conversation.rules[5].regex", // out of range: as it is
		"spec.memory.connection[0].name":                   "spec.memory.connection[0].name",
	} {
		if got := rules.Annotate(&spec, in); got != want {
			t.Errorf("Annotate(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestUnknownOperationSuggestsTheClosest(t *testing.T) {
	_, errs := compileYAML(t, `{operation: {port: 1}, memory: {connection: [{name: num, type: int}]}, conversation: {rules: [{id: 1, mode: Sync, regex: x, operation: {name: NBR_SUMM, inputs: [num, "1"], outputs: [num]}}]}}`)
	if len(errs) != 1 || !strings.Contains(errs[0], "unknown operation; did you mean NBR_SUM?") {
		t.Errorf("errors %q", errs)
	}
}

func TestSortFieldErrorsFollowsTheSpecsOrder(t *testing.T) {
	errs := field.ErrorList{
		field.Invalid(field.NewPath("spec", "conversation", "rules").Index(10).Child("regex"), "", "c"),
		field.Invalid(field.NewPath("spec", "conversation", "rules").Index(2).Child("trigger").Index(0), "", "b"),
		field.Invalid(field.NewPath("spec", "memory", "connection").Index(0), "", "a2"),
		field.Invalid(field.NewPath("spec", "operation", "port"), "", "a1"),
		field.Invalid(field.NewPath("spec", "conversation", "greetings"), "", "a3"),
	}
	rules.SortFieldErrors(errs)
	var got []string
	for _, e := range errs {
		got = append(got, e.Detail)
	}
	if strings.Join(got, " ") != "a1 a2 a3 b c" {
		t.Errorf("order %v", got)
	}
}
