package lope

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// These tests check the conversion field by field, beyond the golden bytes.

func convert(t *testing.T, path string) *Result {
	t.Helper()
	res, err := Convert(path)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// lopeFile writes a Lope file (plus others, by relative name) in a temporary directory and
// returns the path of the first.
func lopeFile(t *testing.T, content string, others ...string) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for i := 0; i+1 < len(others); i += 2 {
		write(others[i], others[i+1])
	}
	return write("rules.yml", content)
}

func ruleByID(t *testing.T, rs []v1alpha1.Rule, id int32) v1alpha1.Rule {
	t.Helper()
	for _, r := range rs {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("no rule %d", id)
	return v1alpha1.Rule{}
}

func variableNamed(t *testing.T, vs []v1alpha1.Variable, name string) v1alpha1.Variable {
	t.Helper()
	for _, v := range vs {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no variable %s", name)
	return v1alpha1.Variable{}
}

func dur(d *metav1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.Duration
}

func hasIssue(issues []Issue, path, part string) bool {
	for _, is := range issues {
		if is.Path == path && strings.Contains(is.Message, part) {
			return true
		}
	}
	return false
}

func TestTCPServerFieldByField(t *testing.T) {
	res := convert(t, "testdata/tcp_server.yml")
	cr := res.Rules
	if cr.APIVersion != "parley.io/v1alpha1" || cr.Kind != "ConversationRules" || cr.Name != "tcp-server" {
		t.Errorf("type/name: %+v %s", cr.TypeMeta, cr.Name)
	}
	s := cr.Spec
	if s.Description != "IoT broker decoy" || s.Group != "honeypots" || s.Enabled == nil || !*s.Enabled {
		t.Errorf("description %q group %q enabled %v", s.Description, s.Group, s.Enabled)
	}
	op := s.Operation
	checks := map[string]bool{
		"mode":                     op.Mode == v1alpha1.ModeServer,
		"transport":                op.Transport == v1alpha1.TransportTCP,
		"port":                     op.Port == 1883,
		"ip":                       op.IP == "",
		"ipv6":                     !op.IPv6,
		"encoding":                 op.Encoding == v1alpha1.EncodingUTF8,
		"identifyBy":               op.IdentifyBy == v1alpha1.IdentifyByAddress,
		"interactionTimeout":       dur(op.InteractionTimeout) == 300*time.Second,
		"connectionQueue":          *op.ConnectionQueue == 10,
		"maxInputSize":             *op.MaxInputSize == 2048,
		"maxConcurrentConnections": *op.MaxConcurrentConnections == 20,
		"executionDelay":           dur(op.ExecutionDelay) == 100*time.Millisecond,
		"onlyFirstHit":             !op.OnlyFirstHit,
		"tls":                      op.TLS == v1alpha1.TLS{},
		"socket":                   !op.Socket.CloseAfterReplying && *op.Socket.RuleTriggeredClosing,
		"session":                  op.Session == nil,
		"memoryUpdateWhen":         op.MemoryUpdateWhen == v1alpha1.MemoryUpdateDetected,
		"reportMemory":             op.ReportMemory,
		"alertAll":                 !op.AlertAll,
	}
	for name, ok := range checks {
		if !ok {
			t.Errorf("operation.%s: %+v", name, op)
		}
	}

	// Bools are written true/false; numbers keep their source text; generators carry over.
	mem := s.Memory
	if v := variableNamed(t, mem.Connection, "logged"); v.Type != v1alpha1.TypeBool || v.Default != "false" {
		t.Errorf("logged: %+v", v)
	}
	if v := variableNamed(t, mem.Connection, "ratio"); v.Type != v1alpha1.TypeFloat || v.Default != "1.50" {
		t.Errorf("ratio: %+v", v)
	}
	if v := variableNamed(t, mem.Connection, "backup"); v.Type != v1alpha1.TypeString {
		t.Errorf("backup (no type is string): %+v", v)
	}
	if v := variableNamed(t, mem.Connection, "dice"); v.Generate == nil || v.Generate.Min != "1" || v.Generate.Max != "6" {
		t.Errorf("dice: %+v", v)
	}
	if v := variableNamed(t, mem.Global, "banner_id"); v.Generate == nil || *v.Generate.Length != 8 || v.Generate.Charset != v1alpha1.CharsetHexUpper {
		t.Errorf("banner_id: %+v", v)
	}
	if v := variableNamed(t, mem.Global, "logins"); !v.Report || v.Default != "0" || v.Type != v1alpha1.TypeInt {
		t.Errorf("logins: %+v", v)
	}

	conv := s.Conversation
	if g := conv.Greetings; g == nil || !g.Alert || g.Value != "READY {{banner_id}}\n" || g.Enabled != nil {
		t.Errorf("greetings: %+v", g)
	}
	if e := conv.Ending; e == nil || !e.Base64 || e.Value != "QllFCg==" {
		t.Errorf("ending: %+v", e)
	}
	rs := conv.Rules
	if r := ruleByID(t, rs, 1); r.Regex != `^PING\n?\z` || r.Enabled != nil {
		t.Errorf("rule 1 ($ as Python's, enabled by default): %+v", r)
	}
	r2 := ruleByID(t, rs, 2)
	if len(r2.Trigger) != 1 || r2.Trigger[0].RuleID != 20 || dur(r2.Trigger[0].Delay) != 50*time.Millisecond {
		t.Errorf("rule 2 trigger: %+v", r2.Trigger)
	}
	if len(r2.Captures) != 1 || r2.Captures[0].Regex != `(?:USER )(\w+)` || r2.Captures[0].Variable != "user" {
		t.Errorf("rule 2 captures: %+v", r2.Captures)
	}
	r3 := ruleByID(t, rs, 3)
	if !r3.Alert || len(r3.Updates) != 1 || r3.Updates[0] != (v1alpha1.Update{Variable: "logged", Value: "true"}) {
		t.Errorf("rule 3: %+v", r3)
	}
	if o := r3.Operation; o == nil || o.Name != "NBR_SUM" || strings.Join(o.Inputs, ",") != "logins,1" || strings.Join(o.Outputs, ",") != "logins" {
		t.Errorf("rule 3 operation: %+v", o)
	}
	if r := ruleByID(t, rs, 4); len(r.Conditions) != 1 || r.Conditions[0] != (v1alpha1.Condition{Variable: "logged", Value: "true"}) {
		t.Errorf("rule 4 conditions: %+v", r.Conditions)
	}
	// reference_variable wins over value.
	if r := ruleByID(t, rs, 5); len(r.Updates) != 1 || r.Updates[0] != (v1alpha1.Update{Variable: "backup", FromVariable: "user"}) {
		t.Errorf("rule 5 updates: %+v", r.Updates)
	}
	if r := ruleByID(t, rs, 6); !r.RegexBase64 || r.Regex != "XlFVSVQ=" || !r.ResponseBase64 || !r.Ending {
		t.Errorf("rule 6: %+v", r)
	}
	if r := ruleByID(t, rs, 7); !r.CloseConnection {
		t.Errorf("rule 7: %+v", r)
	}
	if r := ruleByID(t, rs, 8); r.Operation == nil || r.Operation.Inputs[2] != "got ${1}!" {
		t.Errorf("rule 8 replacement: %+v", r.Operation)
	}
	if r := ruleByID(t, rs, 9); r.Enabled == nil || *r.Enabled {
		t.Errorf("rule 9 (enable: no): %+v", r.Enabled)
	}
	if r := ruleByID(t, rs, 20); r.Mode != v1alpha1.RuleAsync || r.Regex != "" {
		t.Errorf("rule 20: %+v", r)
	}
	if len(conv.Groups) != 1 || conv.Groups[0].ID != "admin" || conv.Groups[0].Regex != "^ADMIN" ||
		len(conv.Groups[0].Conditions) != 1 || len(conv.Groups[0].Rules) != 1 {
		t.Errorf("groups: %+v", conv.Groups)
	}
	if len(res.Dropped) != 0 {
		t.Errorf("dropped: %v", res.Dropped)
	}
	if !hasIssue(res.Notes, "conversation.custom_rules.rules[2].alert", "email, slack") ||
		!hasIssue(res.Notes, "conversation.custom_rules.rules[8].enable", "never runs") {
		t.Errorf("notes: %v", res.Notes)
	}
}

func TestAsyncHybridFieldByField(t *testing.T) {
	res := convert(t, "testdata/async_hybrid.yml")
	s := res.Rules.Spec
	if s.Enabled == nil || *s.Enabled || s.Group != "" {
		t.Errorf("enable_use: no and ext_conn_group: default: enabled %v group %q", s.Enabled, s.Group)
	}
	op := s.Operation
	if op.InteractionTimeout != nil || op.ExecutionDelay != nil || !op.OnlyFirstHit || !op.Socket.CloseAfterReplying ||
		*op.Socket.RuleTriggeredClosing || op.MemoryUpdateWhen != v1alpha1.MemoryUpdateExecuted {
		t.Errorf("operation: %+v", op)
	}
	if s.Conversation.Default != nil {
		t.Errorf("a basic rule with enable: no is left out: %+v", s.Conversation.Default)
	}
	rs := s.Conversation.Rules
	r1 := ruleByID(t, rs, 1)
	if len(r1.Trigger) != 2 || dur(r1.Trigger[0].Delay) != 1500*time.Millisecond || r1.Trigger[1].RuleID != 3 || r1.Trigger[1].Delay != nil {
		t.Errorf("rule 1 trigger (the one to disabled rule 9 left out): %+v", r1.Trigger)
	}
	if !hasIssue(res.Notes, "conversation.custom_rules.rules[0].trigger[2].rule_id", "disabled") {
		t.Errorf("notes: %v", res.Notes)
	}
	if r := ruleByID(t, rs, 3); r.Mode != v1alpha1.RuleHybrid || r.Regex != "^STEP" {
		t.Errorf("rule 3: %+v", r)
	}
	if r := ruleByID(t, rs, 4); r.OnStart == nil || dur(r.OnStart.Delay) != 2*time.Second {
		t.Errorf("rule 4 onStart: %+v", r.OnStart)
	}
	sw := ruleByID(t, rs, 5).AsyncSwitch
	if sw == nil || len(sw.Options) != 2 || dur(sw.Options[0].Trigger[0].Delay) != 500*time.Millisecond ||
		sw.Options[1].Conditions[0] != (v1alpha1.Condition{Variable: "counter", FromVariable: "total"}) ||
		len(sw.Default) != 1 || sw.Default[0].RuleID != 3 {
		t.Errorf("rule 5 switch: %+v", sw)
	}
	loop := ruleByID(t, rs, 6).AsyncLoop
	if loop == nil || loop.Conditions[0].Value != "false" || len(loop.Rules) != 2 ||
		loop.Rules[0].RuleID != 7 || dur(loop.Rules[0].Delay) != time.Second || loop.Rules[0].MaxIterations != 5 ||
		loop.Rules[1].MaxIterations != 0 || dur(loop.Rules[1].Delay) != 2*time.Second {
		t.Errorf("rule 6 loop: %+v", loop)
	}
	g := s.Conversation.Groups
	if len(g) != 1 || g[0].ID != "7" || !g[0].RegexBase64 || g[0].Regex != "XkFETUlO" || len(g[0].Rules) != 2 ||
		dur(g[0].Rules[0].Trigger[0].Delay) != 250*time.Millisecond {
		t.Errorf("group: %+v", g)
	}
}

func TestUDPClientFieldByField(t *testing.T) {
	res := convert(t, "testdata/udp_client.yml")
	op := res.Rules.Spec.Operation
	if op.Mode != v1alpha1.ModeClient || op.Transport != v1alpha1.TransportUDP || op.IP != "127.0.0.1" || op.Port != 5353 ||
		op.Encoding != v1alpha1.EncodingASCII || dur(op.InteractionTimeout) != 10500*time.Millisecond || *op.MaxConcurrentConnections != 1 {
		t.Errorf("operation: %+v", op)
	}
	conv := res.Rules.Spec.Conversation
	if conv.Ending == nil || conv.Ending.Value != "" || conv.Default != nil || conv.Timeout == nil {
		t.Errorf("basic rules: %+v", conv)
	}
	r1 := ruleByID(t, conv.Rules, 1)
	if !r1.ReconnectBefore || r1.Operation.Inputs[1] != `^\d+\z` || r1.Captures[0].Regex != `\d+` {
		t.Errorf("rule 1: %+v", r1)
	}
}

func TestSessionFieldByField(t *testing.T) {
	res := convert(t, "testdata/session.yml")
	op := res.Rules.Spec.Operation
	if !op.TLS.Enabled || !op.TLS.ClientAuthentication {
		t.Errorf("tls: %+v", op.TLS)
	}
	sess := op.Session
	if sess == nil || !sess.Enabled || sess.Key != "SESSIONID" || *sess.Separator != "=" || sess.EndValue != ";" ||
		sess.UpdateWhen != v1alpha1.MemoryUpdateDetected || sess.Generate == nil || *sess.Generate.Length != 16 ||
		sess.Generate.Charset != v1alpha1.CharsetHexMixed {
		t.Errorf("session: %+v", sess)
	}
	rs := res.Rules.Spec.Conversation.Rules
	for id, want := range map[int32]v1alpha1.SessionUpdate{1: {FromVariable: "token"}, 2: {Generate: true}, 3: {Value: "guest"}} {
		if r := ruleByID(t, rs, id); r.SessionUpdate == nil || *r.SessionUpdate != want {
			t.Errorf("rule %d sessionUpdate: %+v", id, r.SessionUpdate)
		}
	}
	if r := ruleByID(t, rs, 4); r.SessionUpdate != nil {
		t.Errorf("rule 4 (enable: no): %+v", r.SessionUpdate)
	}
	want := map[string]v1alpha1.Charset{
		"token": v1alpha1.CharsetNumeric, "c_hex_lower": v1alpha1.CharsetHexLower, "c_hex_upper": v1alpha1.CharsetHexUpper,
		"c_alnum_lower": v1alpha1.CharsetAlphanumericLower, "c_alnum_upper": v1alpha1.CharsetAlphanumericUpper,
		"c_alnum_mix": v1alpha1.CharsetAlphanumericMixed, "c_sym_lower": v1alpha1.CharsetSymbolsLower,
		"c_sym_upper": v1alpha1.CharsetSymbolsUpper, "c_sym_mix": v1alpha1.CharsetSymbolsMixed,
	}
	for name, cs := range want {
		if v := variableNamed(t, res.Rules.Spec.Memory.Connection, name); v.Generate == nil || v.Generate.Charset != cs {
			t.Errorf("%s: %+v", name, v.Generate)
		}
	}
	if v := variableNamed(t, res.Rules.Spec.Memory.Connection, "price"); v.Generate.Min != "0.5" || v.Generate.Max != "9.5" {
		t.Errorf("price: %+v", v.Generate)
	}
}

// TestSessionNeeded: the session templates, operands and updates need an enabled session.
func TestSessionNeeded(t *testing.T) {
	const rules = `
    custom_rules:
        rules:
          - id: 1
            mode: sync
            regex: x
            response: "id {{SESSION_VALUE}}"
            session_update: {enable: yes, fixed_value: abc}
            builtin_memory_operation: {enable: yes, operation: STR_UPPER, input: [SESSION_KEY], output: [v]}
`
	head := "enable_use: yes\noperation:\n    port: 80\n"
	with := head + "    session: {enable: yes, key: SID, update: {enable: yes}}\nmemory_variables:\n    connection_level: [{name: v}]\nconversation:" + rules
	res := convert(t, lopeFile(t, with))
	r := res.Rules.Spec.Conversation.Rules[0]
	if r.Response != "id {{SESSION_VALUE}}" || r.SessionUpdate == nil || r.Operation == nil || len(res.Dropped) != 0 {
		t.Errorf("with a session: %+v, dropped %v", r, res.Dropped)
	}
	without := head + "memory_variables:\n    connection_level: [{name: v}]\nconversation:" + rules
	res = convert(t, lopeFile(t, without))
	r = res.Rules.Spec.Conversation.Rules[0]
	if r.Response != "id None" || r.SessionUpdate != nil || r.Operation != nil {
		t.Errorf("without a session: %+v", r)
	}
	p := "conversation.custom_rules.rules[0]"
	if !hasIssue(res.Dropped, p+".response", "operation.session") || !hasIssue(res.Dropped, p+".builtin_memory_operation.input[0]", "operation.session") ||
		!hasIssue(res.Notes, p+".session_update", "never applies") {
		t.Errorf("dropped %v notes %v", res.Dropped, res.Notes)
	}
}

// TestEnableDefaults: Lope's basic rules need enable: yes, custom rules run without it, and
// enable_use defaults to no.
func TestEnableDefaults(t *testing.T) {
	res := convert(t, lopeFile(t, `
operation: {port: 7}
conversation:
    greetings: {value: "hi"}
    default: {value: "?", enable: no}
    empty: {enable: yes}
    custom_rules:
        rules:
          - {id: 1, mode: sync, regex: a}
          - {id: 2, mode: sync, regex: b, enable: yes}
          - {id: 3, mode: sync, regex: c, enable: no}
`))
	s := res.Rules.Spec
	if s.Enabled == nil || *s.Enabled {
		t.Errorf("enable_use absent must give enabled: false, got %v", s.Enabled)
	}
	c := s.Conversation
	if c.Greetings != nil || c.Default != nil || c.Empty == nil || c.Empty.Value != "" {
		t.Errorf("basic rules: %+v %+v %+v", c.Greetings, c.Default, c.Empty)
	}
	if c.Rules[0].Enabled != nil || c.Rules[1].Enabled != nil || c.Rules[2].Enabled == nil || *c.Rules[2].Enabled {
		t.Errorf("custom rules: %v %v %v", c.Rules[0].Enabled, c.Rules[1].Enabled, c.Rules[2].Enabled)
	}
	// Lope's default is no rule-triggered closing; Parley's is yes: always written.
	if rc := s.Operation.Socket.RuleTriggeredClosing; rc == nil || *rc {
		t.Errorf("ruleTriggeredClosing: %v", rc)
	}
}

func TestDroppedFile(t *testing.T) {
	res := convert(t, "testdata/dropped.yml")
	ids := map[int32]bool{}
	for _, r := range res.Rules.Spec.Conversation.Rules {
		ids[r.ID] = true
		for _, tr := range r.Trigger {
			if tr.RuleID == 1 || tr.RuleID == 41 || tr.RuleID == 99 {
				t.Errorf("rule %d still triggers %d", r.ID, tr.RuleID)
			}
		}
		if r.AsyncLoop != nil || (r.AsyncSwitch != nil && r.ID == 4) {
			t.Errorf("rule %d keeps a loop or switch to a rule left out", r.ID)
		}
	}
	// Both rules 5 go: the first for its backreference, the second for its id.
	for _, id := range []int32{1, 5, 6, 7, 40, 41} {
		if ids[id] {
			t.Errorf("rule %d should have been left out", id)
		}
	}
	if len(res.Rules.Spec.Conversation.Groups) != 0 {
		t.Errorf("the group survived")
	}
	for _, want := range []struct{ path, part string }{
		{"author", "unknown Lope field"},
		{"operation.prot", "unknown Lope field"},
		{"conversation.custom_rules.rules[11].respone", "unknown Lope field"},
		{"operation.custom_function_preprocessor", "Python"},
		{"operation.custom_function_postprocessor", "Python"},
		{"operation.conditional_execution", "only a client waits"},
		{"conversation.custom_rules.rules[0].regex", "lookarounds"},
		{"conversation.custom_rules.rules[4].regex", "backreferences"},
		{"conversation.custom_rules.rules[5].regex", "possessive"},
		{"conversation.custom_rules.rules[6].regex", "atomic"},
		{"conversation.custom_rules.rules[7].custom_function", "geoip"},
		{"conversation.custom_rules.rules[7].fork", "replicas"},
		{"conversation.custom_rules.rules[8].capturing_data.captures[0].regex", "lookarounds"},
		{"conversation.custom_rules.rules[9].builtin_memory_operation.input[1]", "lookarounds"},
		{"conversation.custom_rules.rules[1].trigger[0].rule_id", "rule 1 was left out"},
		{"conversation.custom_rules.rules[1].trigger[1].rule_id", "no rule 99"},
		{"conversation.custom_rules.rules[1].trigger[2].rule_id", "sync rule"},
		{"conversation.custom_rules.rules[1].trigger[3].rule_id", "groups[0].regex"},
		{"conversation.custom_rules.rules[2].async_loop.rules[0].rule_id", "rule 1 was left out"},
		{"conversation.custom_rules.rules[3].async_switch.default[0].rule_id", "rule 1 was left out"},
		{"conversation.custom_rules.rules[13].id", "already used"},
		{"conversation.custom_rules.groups[0].regex", "the group and its 2 rules"},
	} {
		if !hasIssue(res.Dropped, want.path, want.part) {
			t.Errorf("missing dropped %s: %s", want.path, want.part)
		}
	}
	// The variable shared through Redis stays shared; a server never waits on it.
	if v := variableNamed(t, res.Rules.Spec.Memory.Shared, "shared_counter"); v.Default != "0" {
		t.Errorf("shared_counter: %+v", v)
	}
	if res.Rules.Spec.Operation.StartWhen != nil || res.Rules.Spec.Memory.SharedInit != "" {
		t.Errorf("a server got startWhen or sharedInit: %+v %q", res.Rules.Spec.Operation.StartWhen, res.Rules.Spec.Memory.SharedInit)
	}
}

// TestSharedMemory: multi_extconn_level variables become memory.shared, the overwrite
// during init sharedInit: Overwrite, and the rules over them keep their steps.
func TestSharedMemory(t *testing.T) {
	res := convert(t, "testdata/shared_knock.yml")
	m := res.Rules.Spec.Memory
	if m.SharedInit != v1alpha1.SharedInitOverwrite || len(m.Global) != 0 {
		t.Errorf("sharedInit %q, global %+v", m.SharedInit, m.Global)
	}
	var names []string
	for _, v := range m.Shared {
		names = append(names, v.Name)
	}
	if strings.Join(names, ",") != "knocks,knocked,attacker" {
		t.Errorf("shared: %v", names)
	}
	if v := variableNamed(t, m.Shared, "knocked"); v.Type != v1alpha1.TypeBool || v.Default != "false" || !v.Report {
		t.Errorf("knocked: %+v", v)
	}
	if op := ruleByID(t, res.Rules.Spec.Conversation.Rules, 1).Operation; op == nil || op.Outputs[0] != "knocks" {
		t.Errorf("rule 1 operation: %+v", op)
	}
	if len(res.Dropped) != 0 || len(res.Notes) != 0 {
		t.Errorf("issues: %v %v", res.Dropped, res.Notes)
	}
}

// TestConditionalExecution: a client's conditional_execution becomes operation.startWhen,
// over shared variables only, with its target from mem_var_ip and mem_var_port.
func TestConditionalExecution(t *testing.T) {
	res := convert(t, "testdata/shared_client.yml")
	sw := res.Rules.Spec.Operation.StartWhen
	if sw == nil {
		t.Fatal("no startWhen")
	}
	want := []v1alpha1.Condition{{Variable: "go", Value: "true"}, {Variable: "stage", FromVariable: "wanted"}}
	if !reflect.DeepEqual(sw.Conditions, want) || sw.When != "" || sw.IPFromVariable != "target_ip" || sw.PortFromVariable != "target_port" {
		t.Errorf("startWhen: %+v", sw)
	}
	if !hasIssue(res.Dropped, "memory_variables.multi_extconn_level[5]", "also declared in connection_level") ||
		!hasIssue(res.Dropped, "operation.conditional_execution.conditions[2].var_name", "not a shared") {
		t.Errorf("issues: %v", res.Dropped)
	}

	res = convert(t, "testdata/shared_target_only.yml")
	sw = res.Rules.Spec.Operation.StartWhen
	if sw == nil || len(sw.Conditions) != 0 || sw.When != "true" || sw.IPFromVariable != "" || sw.PortFromVariable != "port_number" {
		t.Errorf("startWhen: %+v", sw)
	}
	if !hasIssue(res.Dropped, "operation.conditional_execution.mem_var_ip", "of type int, not string") ||
		!hasIssue(res.Notes, "operation.conditional_execution.conditions", "starts at once") ||
		!hasIssue(res.Notes, "operation.memory_variables_multi_ext_connector_enable", "not enabled") {
		t.Errorf("issues: %v %v", res.Dropped, res.Notes)
	}
}

// TestConditionalExecutionLeftOut: what gives a client nothing to wait for.
func TestConditionalExecutionLeftOut(t *testing.T) {
	for _, tc := range []struct {
		name, ce   string
		dropped    bool
		path, part string
	}{
		{"not enabled", "{enable: no, conditions: [{var_name: s, value: 1}]}", false, "operation.conditional_execution", "not enabled"},
		{"nothing shared", "{enable: yes, conditions: [{var_name: g, value: 1}]}", true, "operation.conditional_execution", "starts at once"},
		{"undeclared target", "{enable: yes, conditions: [{var_name: s, value: 1}], mem_var_port: nope}", true, "operation.conditional_execution.mem_var_port", "not declared"},
		{"target not shared", "{enable: yes, conditions: [{var_name: s, value: 1}], mem_var_ip: h}", true, "operation.conditional_execution.mem_var_ip", "not a shared"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := convert(t, lopeFile(t, `
enable_use: yes
operation:
    mode: client
    ip: 127.0.0.1
    port: 7
    multi_ext_connector_memory_overwrite_during_init: yes
    conditional_execution: `+tc.ce+`
memory_variables:
    multi_extconn_level: [{name: s, type: int}]
    global_level: [{name: g, type: int}, {name: h, type: string}]
`))
			issues := res.Notes
			if tc.dropped {
				issues = res.Dropped
			}
			if !hasIssue(issues, tc.path, tc.part) {
				t.Errorf("missing %s: %s in %v %v", tc.path, tc.part, res.Dropped, res.Notes)
			}
			if sw := res.Rules.Spec.Operation.StartWhen; sw != nil && len(sw.Conditions) == 0 {
				t.Errorf("startWhen with nothing to wait for: %+v", sw)
			}
			if res.Rules.Spec.Memory.SharedInit != v1alpha1.SharedInitOverwrite {
				t.Errorf("sharedInit: %q", res.Rules.Spec.Memory.SharedInit)
			}
		})
	}
	// Nothing shared: the overwrite has nothing to act on.
	res := convert(t, lopeFile(t, "operation: {port: 7, multi_ext_connector_memory_overwrite_during_init: yes}\n"))
	if res.Rules.Spec.Memory.SharedInit != "" || !hasIssue(res.Notes, "operation.multi_ext_connector_memory_overwrite_during_init", "no shared variable") {
		t.Errorf("sharedInit %q, notes %v", res.Rules.Spec.Memory.SharedInit, res.Notes)
	}
}

func TestImports(t *testing.T) {
	res := convert(t, "testdata/imports_main.yml")
	m := res.Rules.Spec.Memory
	var names []string
	for _, v := range m.Connection {
		names = append(names, v.Name)
	}
	if strings.Join(names, ",") != "shell,cwd,last_command" || len(m.Global) != 1 || m.Global[0].Name != "sessions" {
		t.Errorf("variables: connection %v global %+v", names, m.Global)
	}
	var ids []int32
	for _, r := range res.Rules.Spec.Conversation.Rules {
		ids = append(ids, r.ID)
	}
	if len(ids) != 3 || ids[0] != 1 || ids[1] != 10 || ids[2] != 20 {
		t.Errorf("rules: %v", ids)
	}
	if g := res.Rules.Spec.Conversation.Groups; len(g) != 1 || g[0].ID != "shell" || g[0].Rules[0].ID != 11 {
		t.Errorf("groups: %+v", g)
	}
	// Lope reads both memory imports (the first imports another) but no rule import.
	if len(res.Dropped) != 0 || len(res.Notes) != 1 || !hasIssue(res.Notes, "conversation.custom_rules.import[0]", "never loads rule imports") {
		t.Errorf("issues: %v %v", res.Dropped, res.Notes)
	}
}

// TestImportPaths: issues inside imported files are reported through the import entry.
func TestImportPaths(t *testing.T) {
	abs := filepath.Join(t.TempDir(), "abs.yml")
	if err := os.WriteFile(abs, []byte("global_level: [{name: g, typo: 1}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := convert(t, lopeFile(t, `
operation: {port: 7}
memory_variables:
    import: [{path: `+abs+`}]
conversation:
    custom_rules:
        import: [{path: sub/more.yml, is_relative: yes}]
`, "sub/more.yml", "rules: [{id: 1, mode: sync, regex: a}]\nimport: [{path: deeper.yml, is_relative: yes}]\n",
		"sub/deeper.yml", "rules: [{id: 2, mode: sync, regex: '(?<!x)y'}]\n"))
	if !hasIssue(res.Dropped, "memory_variables.import[0].global_level[0].typo", "unknown") ||
		!hasIssue(res.Dropped, "conversation.custom_rules.import[0].import[0].rules[0].regex", "lookarounds") {
		t.Errorf("dropped: %v", res.Dropped)
	}
	if len(res.Rules.Spec.Memory.Global) != 1 || len(res.Rules.Spec.Conversation.Rules) != 1 {
		t.Errorf("spec: %+v", res.Rules.Spec)
	}
}

// TestMemoryImportsLopeReads: Lope reads memory imports as one list, the entries of each
// file read appended, and stops after the first file that imports nothing.
func TestMemoryImportsLopeReads(t *testing.T) {
	res := convert(t, lopeFile(t, `
operation: {port: 7}
memory_variables:
    import:
      - {path: a.yml, is_relative: yes}
      - {path: b.yml, is_relative: yes}
      - {path: c.yml, is_relative: yes}
`, "a.yml", "connection_level: [{name: a}]\nimport: [{path: a2.yml, is_relative: yes}]\n",
		"a2.yml", "connection_level: [{name: a2}]\nimport: [{path: a3.yml, is_relative: yes}]\n",
		"a3.yml", "connection_level: [{name: a3}]\n",
		"b.yml", "connection_level: [{name: b}]\n",
		"c.yml", "connection_level: [{name: c}]\n"))
	// Lope's list: a, b, c, then a2 (appended by a); b imports nothing, so it stops there.
	var noted []string
	for _, n := range res.Notes {
		if strings.Contains(n.Message, "stops reading memory imports") {
			noted = append(noted, n.Path)
		}
	}
	if strings.Join(noted, " ") != "memory_variables.import[0].import[0] memory_variables.import[2]" {
		t.Errorf("never read: %v", noted)
	}
	if len(res.Rules.Spec.Memory.Connection) != 5 {
		t.Errorf("every variable is converted: %+v", res.Rules.Spec.Memory.Connection)
	}
}

// TestLopeRoot: Lope reads every is_relative import from its working directory, nested ones
// too; Options.Root stands for it, and without it the importing file's directory is used.
func TestLopeRoot(t *testing.T) {
	main := lopeFile(t, "operation: {port: 7}\nmemory_variables:\n    import: [{path: /conv_rules/a.yml, is_relative: yes}]\n",
		"conv_rules/a.yml", "connection_level: [{name: a}]\nimport: [{path: /conv_rules/b.yml, is_relative: yes}]\n",
		"conv_rules/b.yml", "connection_level: [{name: b}]\n")
	root := filepath.Dir(main)
	// The first import is found next to the importing file; the nested one is not, and the
	// error says where it was looked for and why.
	_, err := Convert(main)
	tried := filepath.Join(root, "conv_rules", "conv_rules", "b.yml")
	if err == nil || !strings.Contains(err.Error(), "memory_variables.import[0].import[0]: no file "+tried) ||
		!strings.Contains(err.Error(), "importing file's directory "+filepath.Join(root, "conv_rules")) ||
		!strings.Contains(err.Error(), "--lope-root") {
		t.Errorf("without a root: %v", err)
	}
	res, err := ConvertWith(main, Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Rules.Spec.Memory.Connection; len(c) != 2 || c[0].Name != "a" || c[1].Name != "b" {
		t.Errorf("variables: %+v", c)
	}
	_, err = ConvertWith(main, Options{Root: filepath.Join(root, "elsewhere")})
	if err == nil || !strings.Contains(err.Error(), "no file "+filepath.Join(root, "elsewhere", "conv_rules", "a.yml")) ||
		!strings.Contains(err.Error(), "import root "+filepath.Join(root, "elsewhere")) {
		t.Errorf("wrong root: %v", err)
	}
}

func TestImportErrors(t *testing.T) {
	_, err := Convert("testdata/cycle/main.yml")
	if err == nil || !strings.Contains(err.Error(), "conversation.custom_rules.import[0].import[0].import[0]: import cycle: b.yml -> c.yml -> b.yml") {
		t.Errorf("cycle: %v", err)
	}
	self := lopeFile(t, "operation: {port: 7}\nmemory_variables:\n    import: [{path: rules.yml, is_relative: yes}]\n")
	if _, err := Convert(self); err == nil || !strings.Contains(err.Error(), "import cycle: rules.yml -> rules.yml") {
		t.Errorf("self import: %v", err)
	}
	missing := lopeFile(t, "operation: {port: 7}\nconversation:\n    custom_rules:\n        import: [{path: nope.yml, is_relative: yes}]\n")
	if _, err := Convert(missing); err == nil || !strings.Contains(err.Error(), "conversation.custom_rules.import[0]") || !strings.Contains(err.Error(), "nope.yml") {
		t.Errorf("missing: %v", err)
	}
}

// TestInvalidInput: what makes a file unusable is an error, not a report.
func TestInvalidInput(t *testing.T) {
	for name, content := range map[string]string{
		"not yaml":      "operation: [port: 1\n",
		"empty":         "  \n",
		"no port":       "name: x\n",
		"bad port":      "operation: {port: abc}\n",
		"bad flag":      "operation: {port: 1, use_ip6: maybe}\n",
		"bad mode":      "operation: {port: 1, mode: peer}\n",
		"bad transport": "operation: {port: 1, transport_protocol: SCTP}\n",
		"bad encoding":  "operation: {port: 1, encoding: latin-1}\n",
		"client no ip":  "operation: {port: 1, mode: client}\n",
		"bad when":      "operation: {port: 1, memory_update_when: sometimes}\n",
		"bad id type":   "operation: {port: 1}\nconversation: {custom_rules: {rules: [{id: [1]}]}}\n",
	} {
		// The caller names the file; an error that names it too would print it twice.
		f := lopeFile(t, content)
		if _, err := Convert(f); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), filepath.Base(f)) {
			t.Errorf("%s: the error names the file: %v", name, err)
		}
	}
	if _, err := Convert(filepath.Join(t.TempDir(), "absent.yml")); err == nil || err.Error() != "no such file or directory" {
		t.Errorf("a missing file: %v", err)
	}
	_, err := Convert(lopeFile(t, "operation:\n    port: 1\n    use_ip6: maybe\n"))
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("a type error should name its line: %v", err)
	}
}

func TestUnknownTemplateAndQuotedNumbers(t *testing.T) {
	res := convert(t, lopeFile(t, `
operation: {port: "8080", interaction_timeout: "2.5", max_input_size: "4096"}
memory_variables:
    connection_level:
      - {name: n, type: int, default_value: 0x10}
      - {name: f, type: float, default_value: .inf}
      - {name: b, type: bool, default_value: "True"}
conversation:
    greetings: {value: "hello {{who}} {{n}} {{ IP }} {{ip}}", enable: yes}
`))
	s := res.Rules.Spec
	if s.Operation.Port != 8080 || dur(s.Operation.InteractionTimeout) != 2500*time.Millisecond || *s.Operation.MaxInputSize != 4096 {
		t.Errorf("operation: %+v", s.Operation)
	}
	c := s.Memory.Connection
	if c[0].Default != "16" || c[1].Default != "inf" || c[2].Default != "true" {
		t.Errorf("defaults: %+v", c)
	}
	// Lope reads reserved names in any case, but not with spaces around them.
	if g := s.Conversation.Greetings.Value; g != "hello None {{n}} None {{IP}}" {
		t.Errorf("greetings: %q", g)
	}
	if !hasIssue(res.Notes, "conversation.greetings.value", "{{who}}") || !hasIssue(res.Notes, "conversation.greetings.value", "{{ IP }}") {
		t.Errorf("notes: %v", res.Notes)
	}
}

// TestOperationsWhen: Lope runs built-in operations when custom_functions_when says, memory
// updates when memory_update_when says; Parley has one moment for both.
func TestOperationsWhen(t *testing.T) {
	const memory = `
memory_variables:
    connection_level: [{name: n, type: int}]
conversation:
    custom_rules:
        rules:
`
	const op = `          - {id: 1, mode: sync, regex: a, builtin_memory_operation: {enable: yes, operation: NBR_SUM, input: [n, 1], output: [n]}}
`
	const update = `          - {id: 2, mode: sync, regex: b, memory: {updates: [{var_name: n, value: 0}]}}
`
	for _, tc := range []struct {
		name, operation, rules string
		want                   v1alpha1.MemoryUpdateWhen
		notePath               string
	}{
		// Both at the same moment: nothing to say.
		{"same", "{port: 1, memory_update_when: rule_detected, custom_functions_when: rule_detected}", op + update, v1alpha1.MemoryUpdateDetected, ""},
		// Operations only: memoryUpdateWhen is their moment.
		{"operations only", "{port: 1, custom_functions_when: rule_detected}", op, v1alpha1.MemoryUpdateDetected, "operation.custom_functions_when"},
		{"operations only, default", "{port: 1, memory_update_when: rule_detected}", op, v1alpha1.MemoryUpdateExecuted, "operation.custom_functions_when"},
		// Updates only: custom_functions_when has nothing to decide.
		{"updates only", "{port: 1, memory_update_when: rule_detected}", update, v1alpha1.MemoryUpdateDetected, ""},
		// Both: the updates keep their moment and each operation is noted.
		{"both", "{port: 1, memory_update_when: rule_detected}", op + update, v1alpha1.MemoryUpdateDetected, "conversation.custom_rules.rules[0].builtin_memory_operation"},
		// Anything but rule_detected is rule_executed for Lope.
		{"unknown", "{port: 1, memory_update_when: rule_detected, custom_functions_when: later}", op, v1alpha1.MemoryUpdateExecuted, "operation.custom_functions_when"},
	} {
		res := convert(t, lopeFile(t, "operation: "+tc.operation+"\n"+memory+tc.rules))
		if got := effective(res.Rules.Spec.Operation.MemoryUpdateWhen); got != tc.want {
			t.Errorf("%s: memoryUpdateWhen %s, want %s", tc.name, got, tc.want)
		}
		noted := false
		for _, n := range res.Notes {
			if strings.Contains(n.Path, "_when") || strings.Contains(n.Path, "builtin_memory_operation") {
				noted = noted || n.Path == tc.notePath
				if n.Path != tc.notePath {
					t.Errorf("%s: unexpected note %s", tc.name, n)
				}
			}
		}
		if tc.notePath != "" && !noted {
			t.Errorf("%s: no note at %s: %v", tc.name, tc.notePath, res.Notes)
		}
	}
}

func TestNameFor(t *testing.T) {
	for in, want := range map[string]string{
		"rules/Tutorial_8888.yml":   "tutorial-8888",
		"a/b/mqtt.yaml":             "mqtt",
		"--weird__Name!!.yml":       "weird-name",
		"___.yml":                   "lope-rules",
		strings.Repeat("x", 80):     strings.Repeat("x", 63),
		"dots.in.name.conversation": "dots-in-name",
	} {
		if got := NameFor(in); got != want {
			t.Errorf("NameFor(%q) = %q, want %q", in, got, want)
		}
	}
}
