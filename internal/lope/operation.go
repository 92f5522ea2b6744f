package lope

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules/codec"
)

// operation converts the operation section. Values Lope cannot run with (no port, an
// unknown mode, transport or encoding) make the whole file unusable, as in Lope: an error.
func (c *converter) operation(o *operation) (v1alpha1.Operation, error) {
	const p = "operation."
	var out v1alpha1.Operation
	switch strings.ToLower(strings.TrimSpace(o.Mode)) {
	case "", "server":
		out.Mode = v1alpha1.ModeServer
	case "client":
		out.Mode = v1alpha1.ModeClient
	default:
		return out, fmt.Errorf("%smode: %q is not server or client", p, o.Mode)
	}
	switch strings.ToUpper(strings.TrimSpace(o.TransportProtocol)) {
	case "", "TCP":
		out.Transport = v1alpha1.TransportTCP
	case "UDP":
		out.Transport = v1alpha1.TransportUDP
	default:
		return out, fmt.Errorf("%stransport_protocol: %q is not TCP or UDP", p, o.TransportProtocol)
	}
	if !o.Port.set || o.Port.v < 1 || o.Port.v > 65535 {
		return out, fmt.Errorf("%sport: a port between 1 and 65535 is required (Lope does not use a file without one)", p)
	}
	out.Port = int32(o.Port.v)
	out.IP = strings.TrimSpace(o.IP)
	if out.Mode == v1alpha1.ModeClient && out.IP == "" {
		return out, fmt.Errorf("%sip: client mode needs the target host", p)
	}
	out.IPv6 = o.UseIP6.on
	if e := strings.TrimSpace(o.Encoding); e != "" {
		// Python accepts utf8, UTF_8, utf-8 ... for the same codec.
		enc, ok := encodings[strings.NewReplacer("-", "", "_", "").Replace(strings.ToLower(e))]
		if !ok {
			return out, fmt.Errorf("%sencoding: %q is not utf-8, utf-16, utf-32 or ascii", p, o.Encoding)
		}
		out.Encoding = enc
	}
	cd, err := codec.For(out.Encoding)
	if err != nil {
		return out, fmt.Errorf("%sencoding: %w", p, err)
	}
	c.codec = cd
	// Lope keys conversations by IP unless the file asks for the port.
	out.IdentifyBy = v1alpha1.IdentifyByIP
	if o.IdentifyByPort.on {
		out.IdentifyBy = v1alpha1.IdentifyByAddress
	}
	// Lope: 0 or less means no timeout.
	if o.InteractionTimeout.set && o.InteractionTimeout.v > 0 {
		out.InteractionTimeout = duration(o.InteractionTimeout.v)
	}
	out.ConnectionQueue = c.count(p+"connection_queue", o.ConnectionQueue, 65535)
	out.MaxInputSize = c.count(p+"max_input_size", o.MaxInputSize, 1<<20)
	out.MaxConcurrentConnections = c.count(p+"max_concurrent_connection", o.MaxConcurrent, 1000000)
	if o.ExecutionDelay.set && o.ExecutionDelay.v > 0 {
		out.ExecutionDelay = duration(o.ExecutionDelay.v)
	}
	out.OnlyFirstHit = o.OnlyFirstHit.on
	out.TLS.Enabled = o.Encrypted.on
	if o.TLSClientAuth.on && !o.Encrypted.on {
		c.note(p+"tls_client_authentication", "ignored without encrypted: yes (as in Lope)")
	} else {
		out.TLS.ClientAuthentication = o.TLSClientAuth.on
	}
	out.Socket.CloseAfterReplying = o.CloseAfterReplying.on
	// Lope's default is no; Parley's is true, so it is always written.
	ruleClosing := o.RuleTriggeredClosing.on
	out.Socket.RuleTriggeredClosing = &ruleClosing
	out.Session = c.session(o.Session)

	updateWhen, err := when(p+"memory_update_when", o.MemoryUpdateWhen)
	if err != nil {
		return out, err
	}
	out.MemoryUpdateWhen = updateWhen
	c.operationNotes(o)
	out.ReportMemory = o.ReportMemory.on
	out.AlertAll = o.AlertAll.on
	return out, nil
}

var encodings = map[string]v1alpha1.Encoding{
	"utf8": v1alpha1.EncodingUTF8, "utf16": v1alpha1.EncodingUTF16, "utf32": v1alpha1.EncodingUTF32,
	"ascii": v1alpha1.EncodingASCII, "usascii": v1alpha1.EncodingASCII,
}

// operationNotes reports the operation fields Parley has no place for.
func (c *converter) operationNotes(o *operation) {
	const p = "operation."
	// Lope decides when built-in operations run with custom_functions_when; anything but
	// rule_detected is rule_executed there.
	opsWhen, err := when(p+"custom_functions_when", o.CustomFunctionsWhen)
	if err != nil {
		c.note(p+"custom_functions_when", "%q is not rule_detected or rule_executed; Lope reads it as rule_executed, and so does the importer", o.CustomFunctionsWhen)
		opsWhen = v1alpha1.MemoryUpdateExecuted
	}
	c.opsWhen = opsWhen
	if o.MemoryOperationsWhen != "" {
		w, err := when(p+"memory_operations_when", o.MemoryOperationsWhen)
		if err != nil || effective(w) != effective(opsWhen) {
			c.note(p+"memory_operations_when", "Lope ignores this field (a bug): built-in operations run when custom_functions_when says (%s), and so they do in the converted rules", lopeWhen(opsWhen))
		}
	}
	if o.EncodeB64Memory.on {
		c.note(p+"encode_b64_memory_reported", "Parley records reported memory as text in Activity objects; there is no base64 option")
	}
}

func when(path, s string) (v1alpha1.MemoryUpdateWhen, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return "", nil
	case "rule_detected":
		return v1alpha1.MemoryUpdateDetected, nil
	case "rule_executed":
		return v1alpha1.MemoryUpdateExecuted, nil
	}
	return "", fmt.Errorf("%s: %q is not rule_detected or rule_executed", path, s)
}

func effective(w v1alpha1.MemoryUpdateWhen) v1alpha1.MemoryUpdateWhen {
	if w == "" {
		return v1alpha1.MemoryUpdateExecuted
	}
	return w
}

// lopeWhen spells a moment as Lope's files do.
func lopeWhen(w v1alpha1.MemoryUpdateWhen) string {
	if effective(w) == v1alpha1.MemoryUpdateDetected {
		return "rule_detected"
	}
	return "rule_executed"
}

// operationsWhen carries custom_functions_when. Lope runs built-in operations when it says
// and memory updates when memory_update_when says; Parley runs a rule's updates and its
// operation at one moment, memoryUpdateWhen. When the two differ and the rules have
// operations but no updates, memoryUpdateWhen takes the operations' moment. When rules have
// both, it keeps the updates' and each operation that now runs at another moment is noted.
func (c *converter) operationsWhen() {
	const p = "operation."
	op := &c.res.Rules.Spec.Operation
	updatesAt, opsAt := effective(op.MemoryUpdateWhen), effective(c.opsWhen)
	if updatesAt == opsAt {
		return
	}
	var withOps []*ruleInfo
	updates := false
	for _, info := range c.rulesInOrder {
		if info.out == nil {
			continue
		}
		if info.out.Operation != nil {
			withOps = append(withOps, info)
		}
		if len(info.out.Updates) > info.opUpdates {
			updates = true
		}
	}
	switch {
	case len(withOps) == 0:
		return
	case !updates:
		op.MemoryUpdateWhen = opsAt
		c.note(p+"custom_functions_when", "Lope runs built-in operations %s (custom_functions_when) and memory updates %s (memory_update_when); Parley runs both at memoryUpdateWhen, and as no rule has memory updates, memoryUpdateWhen is %s", moment(opsAt), moment(updatesAt), opsAt)
		return
	}
	for _, info := range withOps {
		c.note(info.path+".builtin_memory_operation", "Lope runs built-in operations %s (custom_functions_when: %s), memory updates %s; Parley runs both at memoryUpdateWhen, %s, which the rules' memory updates keep: this operation runs %s", moment(opsAt), lopeWhen(opsAt), moment(updatesAt), updatesAt, moment(updatesAt))
	}
}

// moment says when a rule's steps run, relative to its reply.
func moment(w v1alpha1.MemoryUpdateWhen) string {
	if effective(w) == v1alpha1.MemoryUpdateDetected {
		return "when the rule is detected, before the replies"
	}
	return "when the rule is executed, after the replies"
}

// count converts a positive limit; Lope's default applies when it is absent or unusable.
func (c *converter) count(path string, n integer, max int64) *int32 {
	if !n.set {
		return nil
	}
	if n.v < 1 || n.v > max {
		c.drop(path, "%d is not between 1 and %d; Parley's default (Lope's) is used", n.v, max)
		return nil
	}
	v := int32(n.v)
	return &v
}

// duration converts Lope seconds, to the microsecond.
func duration(secs float64) *metav1.Duration {
	return &metav1.Duration{Duration: time.Duration(math.Round(secs*1e6)) * time.Microsecond}
}

// session converts operation.session; sessionUpdates records whether rules may update the
// session id, which Lope allows only with session.update.enable.
func (c *converter) session(s *session) *v1alpha1.Session {
	if s == nil {
		return nil
	}
	const p = "operation.session"
	key := strings.TrimSpace(s.Key)
	if key == "" {
		if s.Enable.on {
			c.drop(p+".key", "a session needs a key; session support left out")
		}
		return nil
	}
	out := &v1alpha1.Session{Enabled: s.Enable.on, Key: key, Separator: s.Separator, EndValue: s.EndValue}
	if g := s.Autogenerated; g != nil {
		if g.Enable.on {
			out.Generate = c.stringGenerate(p+".autogenerated", g)
		} else {
			c.note(p+".autogenerated", "not enabled; left out")
		}
	}
	if u := s.Update; u != nil && u.Enable.on && s.Enable.on {
		w, err := when(p+".update.when", u.When)
		if err != nil {
			c.drop(p+".update.when", "%q is not rule_detected or rule_executed; the default (memory_update_when) is used", u.When)
		}
		// Lope's default is rule_executed, whatever memory_update_when says; Parley's
		// follows memoryUpdateWhen, so the moment is always written.
		out.UpdateWhen = effective(w)
		c.sessionUpdates = true
	}
	return out
}

// startWhen converts conditional_execution (after memory, whose shared variables it reads):
// Lope's client waits until its conditions hold over the shared (Redis) variables, then
// dials the host and port held by mem_var_ip and mem_var_port when they are set. That is
// operation.startWhen. What refers to a variable that is not shared is left out, as
// startWhen reads shared memory only.
func (c *converter) startWhen(o *operation) *v1alpha1.StartWhen {
	const p = "operation.conditional_execution"
	ce := o.ConditionalExecution
	switch {
	case ce == nil:
		return nil
	case !ce.Enable.on:
		c.note(p, "not enabled; ignored")
		return nil
	case !strings.EqualFold(strings.TrimSpace(o.Mode), "client"):
		c.drop(p, "only a client waits before it starts (operation.startWhen is client mode only); the server starts at once")
		return nil
	}
	out := &v1alpha1.StartWhen{}
	for i, cd := range c.conditions(p+".conditions", ce.Conditions) {
		path := fmt.Sprintf("%s.conditions[%d]", p, i)
		switch {
		case !c.shared[cd.Variable]:
			c.drop(path+".var_name", "%q is not a shared (multi_extconn_level) variable, and the client waits on shared memory only; condition left out", cd.Variable)
		case cd.FromVariable != "" && !c.shared[cd.FromVariable]:
			c.drop(path+".reference_variable", "%q is not a shared (multi_extconn_level) variable, and the client waits on shared memory only; condition left out", cd.FromVariable)
		default:
			out.Conditions = append(out.Conditions, cd)
		}
	}
	out.IPFromVariable = c.targetVariable(p+".mem_var_ip", ce.MemVarIP, v1alpha1.TypeString)
	out.PortFromVariable = c.targetVariable(p+".mem_var_port", ce.MemVarPort, v1alpha1.TypeInt, v1alpha1.TypeString)
	if len(out.Conditions) == 0 {
		if out.IPFromVariable == "" && out.PortFromVariable == "" {
			c.drop(p, "no condition over shared variables is left to wait for; the client starts at once")
			return nil
		}
		// Lope starts at once and still takes the target from shared memory; startWhen
		// needs something to hold, and true always does.
		out.When = "true"
		c.note(p+".conditions", "no condition over shared variables: the client starts at once (startWhen.when: \"true\") and takes its target from shared memory")
	}
	return out
}

// targetVariable checks mem_var_ip or mem_var_port: a shared variable of one of types.
func (c *converter) targetVariable(path, name string, types ...v1alpha1.VariableType) string {
	name = strings.TrimSpace(name)
	if name == "" {
		return ""
	}
	typ, declared := c.vars[name]
	switch {
	case !declared:
		c.drop(path, "variable %q is not declared; the target of operation.ip / operation.port is used", name)
		return ""
	case !c.shared[name]:
		c.drop(path, "%q is not a shared (multi_extconn_level) variable; the target of operation.ip / operation.port is used", name)
		return ""
	case !slices.Contains(types, typ):
		c.drop(path, "%q is of type %s, not %s; the target of operation.ip / operation.port is used", name, typ, typeList(types))
		return ""
	}
	return name
}

func typeList(types []v1alpha1.VariableType) string {
	s := make([]string, len(types))
	for i, t := range types {
		s[i] = string(t)
	}
	return strings.Join(s, " or ")
}
