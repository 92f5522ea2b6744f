package lope

import (
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
	"github.com/parley-dev/parley/rules/ops"
)

// This file converts what a rule does to memory when it fires: captures, conditions,
// updates, its built-in operation and its session update.

func (c *converter) captures(path string, cd *capturing) []v1alpha1.Capture {
	if cd == nil {
		return nil
	}
	if !cd.Enable.on {
		c.note(path, "not enabled (enable: yes is needed, as in Lope); left out")
		return nil
	}
	var out []v1alpha1.Capture
	for i, cp := range cd.Captures {
		p := fmt.Sprintf("%s.captures[%d]", path, i)
		name := strings.TrimSpace(cp.MemVarName)
		if _, ok := c.vars[name]; !ok {
			c.drop(p+".mem_var_name", "variable %q is not declared; capture left out", name)
			continue
		}
		if cp.Regex == "" {
			c.drop(p+".regex", "empty regex; capture left out")
			continue
		}
		re, err := c.regex(p+".regex", cp.Regex, cp.RegexB64.on, captureUse)
		if err != nil {
			c.drop(p+".regex", "%v; capture left out", err)
			continue
		}
		out = append(out, v1alpha1.Capture{Regex: re, RegexBase64: cp.RegexB64.on, Variable: name})
	}
	return out
}

func (c *converter) conditions(path string, items []memItem) []v1alpha1.Condition {
	var out []v1alpha1.Condition
	for i, it := range items {
		if v, val, from, ok := c.assignment(fmt.Sprintf("%s[%d]", path, i), it, "condition"); ok {
			out = append(out, v1alpha1.Condition{Variable: v, Value: val, FromVariable: from})
		}
	}
	return out
}

func (c *converter) updates(path string, items []memItem) []v1alpha1.Update {
	var out []v1alpha1.Update
	for i, it := range items {
		if v, val, from, ok := c.assignment(fmt.Sprintf("%s[%d]", path, i), it, "update"); ok {
			out = append(out, v1alpha1.Update{Variable: v, Value: val, FromVariable: from})
		}
	}
	return out
}

// assignment converts {var_name, value, reference_variable}: as in Lope, a reference
// variable wins over a value.
func (c *converter) assignment(path string, it memItem, what string) (name, val, from string, ok bool) {
	name = strings.TrimSpace(it.VarName)
	typ, declared := c.vars[name]
	if !declared {
		c.drop(path+".var_name", "variable %q is not declared; %s left out", name, what)
		return "", "", "", false
	}
	if ref := strings.TrimSpace(it.ReferenceVariable); ref != "" {
		if _, ok := c.vars[ref]; !ok {
			c.drop(path+".reference_variable", "variable %q is not declared; %s left out", ref, what)
			return "", "", "", false
		}
		return name, "", ref, true
	}
	if it.Value == nil {
		c.drop(path, "no value and no reference_variable; %s left out", what)
		return "", "", "", false
	}
	v, ok := normalize(typ, *it.Value)
	c.boolNote(path+".value", typ, *it.Value)
	if !ok {
		c.drop(path+".value", "%q is not of type %s (the type of %s); %s left out", *it.Value, typ, name, what)
		return "", "", "", false
	}
	if typ == v1alpha1.TypeString && what == "update" {
		c.nestedTemplate(path+".value", v)
	}
	return name, v, "", true
}

// memoryOperation converts builtin_memory_operation. Regex inputs given literally are
// translated like other regexes, and a literal STR_REPLACE replacement gets Go's $-syntax.
// Outputs beyond the operation's results come back as updates (spareOutputs).
func (c *converter) memoryOperation(path string, b *builtinOp) (*v1alpha1.MemoryOperation, []v1alpha1.Update) {
	if b == nil {
		return nil, nil
	}
	if !b.Enable.on {
		c.note(path, "not enabled (enable: yes is needed, as in Lope); left out")
		return nil, nil
	}
	op := c.operationBody(path, b)
	if op == nil {
		return nil, nil
	}
	return c.spareOutputs(path, op)
}

// spareOutputs handles an operation given more outputs than it has results, as Lope's
// reference file gives STR_CONCAT two. Lope writes the result to the first output and
// Python's None to each other one: the text None in a string variable, no value at all in
// a number or bool. The operation keeps the outputs it has results for; a spare string
// output becomes an update to "None", which runs at the operation's moment; any other is
// left unchanged (reported), as is one the operation also reads or writes, which an update
// running before the operation would change under it.
func (c *converter) spareOutputs(path string, op *v1alpha1.MemoryOperation) (*v1alpha1.MemoryOperation, []v1alpha1.Update) {
	def, _ := ops.Lookup(op.Name)
	if def.MaxOutputs < 0 || len(op.Outputs) <= def.MaxOutputs {
		return op, nil
	}
	used := map[string]bool{}
	for _, in := range op.Inputs {
		used[in] = true
	}
	for _, o := range op.Outputs[:def.MaxOutputs] {
		used[o] = true
	}
	var updates []v1alpha1.Update
	for i := def.MaxOutputs; i < len(op.Outputs); i++ {
		o, p := op.Outputs[i], fmt.Sprintf("%s.output[%d]", path, i)
		switch typ := c.vars[o]; {
		case used[o]:
			c.drop(p, "%s has %s; Lope writes None to output %q, which the operation also reads or writes; left unchanged", op.Name, results(def.MaxOutputs), o)
		case typ != v1alpha1.TypeString:
			c.drop(p, "%s has %s; Lope stores no value (Python's None) in %s variable %q, which Parley cannot hold; left unchanged", op.Name, results(def.MaxOutputs), typ, o)
		default:
			updates = append(updates, v1alpha1.Update{Variable: o, Value: "None"})
			used[o] = true
			c.note(p, "%s has %s; Lope writes the text None to this string output, and so does the converted rule (an update of %q)", op.Name, results(def.MaxOutputs), o)
		}
	}
	op.Outputs = op.Outputs[:def.MaxOutputs]
	return op, updates
}

func results(n int) string {
	if n == 1 {
		return "one result"
	}
	return fmt.Sprintf("%d results", n)
}

// operationBody converts an enabled builtin_memory_operation, outputs beyond its results
// included.
func (c *converter) operationBody(path string, b *builtinOp) *v1alpha1.MemoryOperation {
	name := strings.TrimSpace(b.Operation)
	op, ok := ops.Lookup(name)
	switch {
	case !ok:
		c.drop(path+".operation", "unknown operation %q; operation left out", name)
		return nil
	case len(b.Output) == 0:
		c.note(path+".output", "no output: the result is lost (in Lope too); operation left out")
		return nil
	case len(b.Input) < op.MinInputs || (op.MaxInputs >= 0 && len(b.Input) > op.MaxInputs):
		c.drop(path+".input", "%s takes %s inputs, not %d; operation left out", name, ops.Arity(op.MinInputs, op.MaxInputs), len(b.Input))
		return nil
	}
	out := &v1alpha1.MemoryOperation{Name: name}
	for i, in := range b.Input {
		p := fmt.Sprintf("%s.input[%d]", path, i)
		// Lope reads its reserved inputs in any case, before variables of the same name.
		if r := reservedInput(in); r != "" {
			if r != in {
				if _, shadowed := c.vars[in]; shadowed {
					c.note(p, "%q is Lope's reserved %s (in any case), not variable %q; written %s", in, r, in, r)
				}
			}
			in = r
		}
		switch {
		case in == rules.TemplateSessionKey || in == rules.TemplateSessionValue:
			if !c.hasSession() {
				c.drop(p, "%s needs operation.session to be enabled; operation left out", in)
				return nil
			}
		case c.operand(in):
		case i == op.RegexInput:
			re, err := c.regex(p, in, false, valueUse)
			if err != nil {
				c.drop(p, "%v; operation left out", err)
				return nil
			}
			in = re
		case name == "STR_REPLACE" && i == 2:
			in = pythonReplacement(in)
		}
		out.Inputs = append(out.Inputs, in)
	}
	for i, o := range b.Output {
		o = strings.TrimSpace(o)
		if _, ok := c.vars[o]; !ok {
			c.drop(fmt.Sprintf("%s.output[%d]", path, i), "variable %q is not declared; operation left out", o)
			return nil
		}
		out.Outputs = append(out.Outputs, o)
	}
	return out
}

// operand says whether an operation input names something rather than being a literal.
func (c *converter) operand(in string) bool {
	switch in {
	case "EXT_IN", rules.TemplateIP, rules.TemplatePort:
		return true
	}
	_, ok := c.vars[in]
	return ok
}

// sessionUpdate converts session_update. Which source wins when several are given is not
// documented by Lope; the variable, then generation, then the fixed value are taken, and
// the others noted.
func (c *converter) sessionUpdate(path string, su *sessionUpdate) *v1alpha1.SessionUpdate {
	if su == nil {
		return nil
	}
	if !su.Enable.on {
		c.note(path, "not enabled (enable: yes is needed, as in Lope); left out")
		return nil
	}
	if !c.sessionUpdates {
		c.note(path, "operation.session (with update.enable) is not enabled, so Lope never applies this; left out")
		return nil
	}
	out := &v1alpha1.SessionUpdate{}
	var used, ignored []string
	if v := strings.TrimSpace(su.MemoryVariable); v != "" {
		if _, ok := c.vars[v]; !ok {
			c.drop(path+".memory_variable", "variable %q is not declared; session update left out", v)
			return nil
		}
		out.FromVariable, used = v, append(used, "memory_variable")
	}
	if su.AutogeneratedValue.on {
		if len(used) == 0 {
			out.Generate, used = true, append(used, "autogenerated_value")
		} else {
			ignored = append(ignored, "autogenerated_value")
		}
	}
	if su.FixedValue != "" {
		if len(used) == 0 {
			out.Value, used = su.FixedValue, append(used, "fixed_value")
		} else {
			ignored = append(ignored, "fixed_value")
		}
	}
	if len(used) == 0 {
		c.drop(path, "no memory_variable, autogenerated_value or fixed_value; session update left out")
		return nil
	}
	if len(ignored) > 0 {
		c.note(path, "%s is used; %s ignored", used[0], strings.Join(ignored, " and "))
	}
	return out
}

// lopePace is the delay a schedule of delay 0 gets when it closes a cycle: Lope runs such a
// schedule at the next pass of its worker loop, Parley at once, which it refuses in a cycle.
const lopePace = 100 * time.Millisecond

// paceZeroDelayCycles gives each schedule that closes a cycle of zero-delay schedules
// Lope's pace, with a note, so that a Lope file whose rules trigger each other without
// delay still converts.
func (c *converter) paceZeroDelayCycles() {
	spec := &c.res.Rules.Spec
	for range 64 { // each pass breaks at least one cycle; a spec has far fewer
		_, errs := rules.Compile(c.res.Rules.Name, 0, spec)
		delays := scheduleDelays(spec)
		broken := false
		for _, e := range errs {
			d, ok := delays[e.Field]
			if !rules.IsZeroDelayCycle(e) || !ok {
				continue
			}
			*d = &metav1.Duration{Duration: lopePace}
			broken = true
			c.note(e.Field, "delay 0 closes %s: Lope runs it at its worker loop's next pass, Parley at once, so it gets %s",
				strings.SplitN(e.Detail, " with no delay", 2)[0], lopePace)
		}
		if !broken {
			return
		}
	}
}

// scheduleDelays maps the field path of every schedule (trigger, asyncSwitch, asyncLoop
// entry) to its delay, as the compiler names them.
func scheduleDelays(spec *v1alpha1.ConversationRulesSpec) map[string]**metav1.Duration {
	out := map[string]**metav1.Duration{}
	addRules := func(path *field.Path, rs []v1alpha1.Rule) {
		for i := range rs {
			r := &rs[i]
			rp := path.Index(i)
			for j := range r.Trigger {
				out[rp.Child("trigger").Index(j).String()] = &r.Trigger[j].Delay
			}
			if sw := r.AsyncSwitch; sw != nil {
				for j := range sw.Options {
					for k := range sw.Options[j].Trigger {
						out[rp.Child("asyncSwitch", "options").Index(j).Child("trigger").Index(k).String()] = &sw.Options[j].Trigger[k].Delay
					}
				}
				for k := range sw.Default {
					out[rp.Child("asyncSwitch", "default").Index(k).String()] = &sw.Default[k].Delay
				}
			}
			if l := r.AsyncLoop; l != nil {
				for k := range l.Rules {
					out[rp.Child("asyncLoop", "rules").Index(k).String()] = &l.Rules[k].Delay
				}
			}
		}
	}
	conv := field.NewPath("spec", "conversation")
	addRules(conv.Child("rules"), spec.Conversation.Rules)
	for i := range spec.Conversation.Groups {
		addRules(conv.Child("groups").Index(i).Child("rules"), spec.Conversation.Groups[i].Rules)
	}
	return out
}

// compileCheck compiles the result as Parley will. The conversion is meant to leave nothing
// for the compiler to refuse; whatever it still refuses is reported with Parley's own path,
// so that an output is never silently invalid.
func (c *converter) compileCheck() {
	_, errs := rules.Compile(c.res.Rules.Name, 0, &c.res.Rules.Spec)
	for _, e := range errs {
		c.res.Dropped = append(c.res.Dropped, Issue{Path: e.Field, Message: "Parley refuses the converted rules here: " + e.ErrorBody()})
	}
}
