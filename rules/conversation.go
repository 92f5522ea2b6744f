package rules

import (
	"encoding/base64"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/text"
	"github.com/parley-dev/parley/rules/expr"
	"github.com/parley-dev/parley/rules/ops"
	"github.com/parley-dev/parley/rules/value"
)

const operandInput = "EXT_IN"

func (c *compiler) conversation(path *field.Path) {
	conv := &c.spec.Conversation
	c.p.Greetings = c.basic(path.Child("greetings"), v1alpha1.BasicGreetings, conv.Greetings)
	c.p.Default = c.basic(path.Child("default"), v1alpha1.BasicDefault, conv.Default)
	c.p.Empty = c.basic(path.Child("empty"), v1alpha1.BasicEmpty, conv.Empty)
	c.p.Timeout = c.basic(path.Child("timeout"), v1alpha1.BasicTimeout, conv.Timeout)
	c.p.Ending = c.basic(path.Child("ending"), v1alpha1.BasicEnding, conv.Ending)

	c.p.Rules = c.ruleList(path.Child("rules"), conv.Rules)
	groupIDs := map[string]bool{}
	for i := range conv.Groups {
		g := &conv.Groups[i]
		gp := path.Child("groups").Index(i)
		switch {
		case g.ID == "":
			c.add(field.Required(gp.Child("id"), ""))
		case groupIDs[g.ID]:
			c.add(field.Duplicate(gp.Child("id"), g.ID))
		}
		groupIDs[g.ID] = true
		group := &Group{ID: g.ID, Conditions: c.conditions(gp.Child("conditions"), g.Conditions)}
		if g.Regex != "" {
			group.Regex = c.regex(gp.Child("regex"), g.Regex, g.RegexBase64)
		}
		group.SharedReads = sharedOf(conditionRefs(group.Conditions))
		group.Rules = c.ruleList(gp.Child("rules"), g.Rules)
		c.p.Groups = append(c.p.Groups, group)
	}
	c.resolveSchedules()
	c.p.buildPrefilter()
}

func (c *compiler) basic(path *field.Path, name string, b *v1alpha1.BasicRule) *Basic {
	if b == nil {
		return nil
	}
	t := c.template(path.Child("value"), b.Value, b.Base64)
	if b.Enabled != nil && !*b.Enabled {
		return nil
	}
	return &Basic{Name: name, Template: t, Alert: b.Alert}
}

// ruleList compiles rules and returns the enabled Sync and Hybrid ones in ascending id.
func (c *compiler) ruleList(path *field.Path, specs []v1alpha1.Rule) []*Rule {
	var matchable []*Rule
	for i := range specs {
		c.p.RuleCount++
		r := c.rule(path.Index(i), &specs[i])
		if r == nil {
			continue
		}
		if r.Mode != v1alpha1.RuleAsync {
			matchable = append(matchable, r)
		}
	}
	sort.SliceStable(matchable, func(i, j int) bool { return matchable[i].ID < matchable[j].ID })
	return matchable
}

// rule compiles one rule; it returns nil for a disabled rule, which is still validated.
func (c *compiler) rule(path *field.Path, s *v1alpha1.Rule) *Rule {
	r := &Rule{
		ID: s.ID, Mode: s.Mode, CloseConnection: s.CloseConnection, ReconnectBefore: s.ReconnectBefore,
		Ending: s.Ending, Alert: s.Alert,
	}
	c.amplification(path.Child("amplification"), r, s.Amplification)
	enabled := s.Enabled == nil || *s.Enabled
	switch {
	case s.ID <= 0:
		c.add(field.Invalid(path.Child("id"), s.ID, "must be a positive integer"))
	case c.byID[s.ID] != nil:
		c.add(field.Duplicate(path.Child("id"), s.ID))
	case enabled:
		c.byID[s.ID] = r
	default:
		// Disabled rules still own their id, so a trigger to one is reported.
		c.byID[s.ID] = &Rule{ID: s.ID, Mode: "disabled"}
	}
	async := s.Mode == v1alpha1.RuleAsync || s.Mode == v1alpha1.RuleHybrid
	switch s.Mode {
	case v1alpha1.RuleSync, v1alpha1.RuleHybrid:
		if s.Regex == "" {
			c.add(field.Required(path.Child("regex"), fmt.Sprintf("a %s rule fires on inputs its regex matches", s.Mode)))
		} else {
			r.Regex = c.regex(path.Child("regex"), s.Regex, s.RegexBase64)
		}
	case v1alpha1.RuleAsync:
		if s.Regex != "" {
			c.add(field.Invalid(path.Child("regex"), s.Regex, "Async rules never match inputs; use mode Hybrid to also match"))
		}
	case "":
		c.add(field.Required(path.Child("mode"), "Sync, Async or Hybrid"))
	default:
		c.add(field.NotSupported(path.Child("mode"), s.Mode, []string{string(v1alpha1.RuleSync), string(v1alpha1.RuleAsync), string(v1alpha1.RuleHybrid)}))
	}
	if s.Response != "" {
		r.Response = c.template(path.Child("response"), s.Response, s.ResponseBase64)
	} else if s.ResponseBase64 {
		c.add(field.Invalid(path.Child("responseBase64"), true, "there is no response to decode"))
	}
	for i, cp := range s.Captures {
		p := path.Child("captures").Index(i)
		re := c.regex(p.Child("regex"), cp.Regex, cp.RegexBase64)
		ref, ok := c.variable(p.Child("variable"), cp.Variable)
		if re != nil && ok {
			r.Captures = append(r.Captures, Capture{Regex: re, Var: ref})
		}
	}
	r.Conditions = c.conditions(path.Child("conditions"), s.Conditions)
	if s.When != "" {
		r.When = c.compileExpr(path.Child("when"), s.When, expr.Bool)
	}
	r.Updates = c.updates(path.Child("updates"), s.Updates)
	if s.Operation != nil {
		r.Operation = c.operationOf(path.Child("operation"), s.Operation)
	}
	c.schedules(path.Child("trigger"), r, s.Trigger, &r.Trigger)
	if s.OnStart != nil {
		if !async {
			c.add(field.Invalid(path.Child("onStart"), "", "only Async and Hybrid rules can run at the start of a conversation"))
		} else if enabled {
			c.p.OnStart = append(c.p.OnStart, Schedule{Rule: r, Delay: c.duration(path.Child("onStart", "delay"), s.OnStart.Delay)})
		}
	}
	if s.AsyncSwitch != nil {
		sp := path.Child("asyncSwitch")
		sw := &Switch{}
		for i, o := range s.AsyncSwitch.Options {
			op := sp.Child("options").Index(i)
			opt := SwitchOption{Conditions: c.conditions(op.Child("conditions"), o.Conditions)}
			c.schedules(op.Child("trigger"), r, o.Trigger, &opt.Trigger)
			sw.Options = append(sw.Options, opt)
		}
		c.schedules(sp.Child("default"), r, s.AsyncSwitch.Default, &sw.Default)
		r.Switch = sw
	}
	if s.AsyncLoop != nil {
		lp := path.Child("asyncLoop")
		loop := &Loop{Conditions: c.conditions(lp.Child("conditions"), s.AsyncLoop.Conditions)}
		if len(s.AsyncLoop.Rules) == 0 {
			c.add(field.Required(lp.Child("rules"), "the rules to repeat"))
		}
		loop.Rules = make([]Schedule, len(s.AsyncLoop.Rules))
		for i, lr := range s.AsyncLoop.Rules {
			p := lp.Child("rules").Index(i)
			if lr.MaxIterations < 0 {
				c.add(field.Invalid(p.Child("maxIterations"), lr.MaxIterations, "must not be negative (0 = unbounded)"))
			}
			delay := c.duration(p.Child("delay"), lr.Delay)
			switch {
			case lr.MaxIterations == 0 && delay == 0:
				c.add(field.Invalid(p.Child("delay"), "0s", "an unbounded loop needs a delay"))
			case delay == 0 && lr.MaxIterations > MaxZeroDelayChain:
				c.add(field.Invalid(p.Child("maxIterations"), lr.MaxIterations,
					fmt.Sprintf("a loop without delay runs at most %d iterations (the bound on zero-delay chains)", MaxZeroDelayChain)))
			}
			loop.Rules[i] = Schedule{Delay: delay, MaxIterations: int(lr.MaxIterations)}
			c.refer(p, r, lr.RuleID, &loop.Rules[i])
		}
		r.Loop = loop
	}
	if s.SessionUpdate != nil {
		r.SessionUpdate = c.sessionUpdate(path.Child("sessionUpdate"), s.SessionUpdate)
	}
	r.Framing = c.ruleFraming(path.Child("framing"), s.Framing)
	if s.ReconnectBefore && c.spec.Operation.Mode != v1alpha1.ModeClient {
		c.add(field.Invalid(path.Child("reconnectBefore"), true, "only client mode can reconnect"))
	}
	r.SharedReads, r.SharedWrites = sharedUse(r)
	if !enabled {
		return nil
	}
	return r
}

// schedules compiles the schedules rule from asks for.
func (c *compiler) schedules(path *field.Path, from *Rule, ts []v1alpha1.Trigger, into *[]Schedule) {
	*into = make([]Schedule, len(ts))
	for i, t := range ts {
		p := path.Index(i)
		(*into)[i].Delay = c.duration(p.Child("delay"), t.Delay)
		c.refer(p, from, t.RuleID, &(*into)[i])
	}
}

// refer notes the schedule at entry, made by rule from, to be resolved once every rule is
// known; its delay must be set already.
func (c *compiler) refer(entry *field.Path, from *Rule, id int32, s *Schedule) {
	c.refs = append(c.refs, ruleRef{entry: entry, from: from, id: id, zeroDelay: s.Delay == 0, set: func(r *Rule) { s.Rule = r }})
}

func (c *compiler) resolveSchedules() {
	for _, ref := range c.refs {
		r := c.byID[ref.id]
		path := ref.entry.Child("ruleID")
		switch {
		case r == nil:
			c.add(field.NotFound(path, ref.id))
		case r.Mode == "disabled":
			c.add(field.Invalid(path, ref.id, "rule is disabled"))
		case r.Mode == v1alpha1.RuleSync:
			c.add(field.Invalid(path, ref.id, "is a Sync rule; only Async and Hybrid rules can be scheduled"))
		default:
			ref.set(r)
		}
	}
	c.zeroDelayCycles()
}

// zeroDelayCycleDetail starts the detail of a zero-delay cycle's error (IsZeroDelayCycle).
const zeroDelayCycleDetail = "a cycle "

// IsZeroDelayCycle says whether a compile error is a cycle of schedules without delay; its
// Field is the schedule that closes the cycle (`parley import` gives it Lope's pace).
func IsZeroDelayCycle(err *field.Error) bool {
	return err.Type == field.ErrorTypeForbidden && strings.HasPrefix(err.Detail, zeroDelayCycleDetail)
}

// zeroDelayCycles refuses every cycle of schedules without delay (a rule that triggers
// itself, or A → B → A): it would run again and again at once, for as long as the runtime's
// bounds let it, where Lope paced it by its worker loop. Each cycle is reported once, at the
// schedule that closes it, with the rules it goes through.
func (c *compiler) zeroDelayCycles() {
	type edge struct {
		to    *Rule
		entry *field.Path
	}
	out := map[*Rule][]edge{}
	var starts []*Rule // in the order of the spec
	for _, ref := range c.refs {
		to := c.byID[ref.id]
		if !ref.zeroDelay || c.byID[ref.from.ID] != ref.from || to == nil || to.Mode == "disabled" || to.Mode == v1alpha1.RuleSync {
			continue // a delay, a disabled or duplicate rule, or a reference reported above
		}
		if _, seen := out[ref.from]; !seen {
			starts = append(starts, ref.from)
		}
		out[ref.from] = append(out[ref.from], edge{to: to, entry: ref.entry})
	}
	const (
		unseen = iota
		onPath
		done
	)
	state := map[*Rule]int{}
	var path []*Rule
	var visit func(r *Rule)
	visit = func(r *Rule) {
		state[r] = onPath
		path = append(path, r)
		for _, e := range out[r] {
			switch state[e.to] {
			case unseen:
				visit(e.to)
			case onPath:
				var ids []string
				for i := len(path) - 1; i >= 0; i-- {
					if path[i] == e.to {
						for _, q := range path[i:] {
							ids = append(ids, fmt.Sprint(q.ID))
						}
						break
					}
				}
				ids = append(ids, fmt.Sprint(e.to.ID))
				c.add(field.Forbidden(e.entry, fmt.Sprintf(
					zeroDelayCycleDetail+"%s with no delay would run again and again at once; give one of its schedules a delay",
					strings.Join(ids, " → "))))
			}
		}
		path = path[:len(path)-1]
		state[r] = done
	}
	for _, r := range starts {
		if state[r] == unseen {
			visit(r)
		}
	}
}

func (c *compiler) conditions(path *field.Path, cs []v1alpha1.Condition) []Condition {
	out := make([]Condition, 0, len(cs))
	for i, cd := range cs {
		ref, val, from, ok := c.assignment(path.Index(i), cd.Variable, cd.Value, cd.FromVariable)
		if ok {
			out = append(out, Condition{Var: ref, Value: val, From: from})
		}
	}
	return out
}

func (c *compiler) updates(path *field.Path, us []v1alpha1.Update) []Update {
	out := make([]Update, 0, len(us))
	for i, u := range us {
		if u.Expr != "" {
			if up, ok := c.exprUpdate(path.Index(i), u); ok {
				out = append(out, up)
			}
			continue
		}
		ref, val, from, ok := c.assignment(path.Index(i), u.Variable, u.Value, u.FromVariable)
		if ok {
			out = append(out, Update{Var: ref, Value: val, From: from})
		}
	}
	return out
}

// exprUpdate compiles an update whose new value is an expression's result.
func (c *compiler) exprUpdate(path *field.Path, u v1alpha1.Update) (Update, bool) {
	ref, ok := c.variable(path.Child("variable"), u.Variable)
	if u.Value != "" || u.FromVariable != "" {
		c.add(field.Invalid(path, u.Expr, "set one of value, fromVariable and expr"))
		ok = false
	}
	e := c.compileExpr(path.Child("expr"), u.Expr, expr.Scalar)
	return Update{Var: ref, Expr: e}, ok && e != nil
}

// assignment compiles the variable/value/fromVariable triple shared by conditions and updates.
func (c *compiler) assignment(path *field.Path, name, val, fromName string) (VarRef, value.Value, *VarRef, bool) {
	ref, ok := c.variable(path.Child("variable"), name)
	if fromName != "" {
		if val != "" {
			c.add(field.Invalid(path, val, "set value or fromVariable, not both"))
			return ref, value.Value{}, nil, false
		}
		from, okFrom := c.variable(path.Child("fromVariable"), fromName)
		return ref, value.Value{}, &from, ok && okFrom
	}
	if !ok {
		return ref, value.Value{}, nil, false
	}
	v, err := value.Parse(ref.Kind, val)
	if err != nil {
		c.add(field.Invalid(path.Child("value"), val, fmt.Sprintf("variable %s is %s: %v", name, ref.Kind, err)))
		return ref, v, nil, false
	}
	return ref, v, nil, true
}

func (c *compiler) operationOf(path *field.Path, o *v1alpha1.MemoryOperation) *Operation {
	op, ok := ops.Lookup(o.Name)
	if !ok {
		if near := text.Closest(o.Name, ops.Names()); near != "" {
			c.add(field.Invalid(path.Child("name"), o.Name, "unknown operation; did you mean "+near+"? (docs/rules.md §5 lists them)"))
		} else {
			c.add(field.NotSupported(path.Child("name"), o.Name, ops.Names()))
		}
		return nil
	}
	if n := len(o.Inputs); n < op.MinInputs || (op.MaxInputs >= 0 && n > op.MaxInputs) {
		c.add(field.Invalid(path.Child("inputs"), n, fmt.Sprintf("%s takes %s inputs", op.Name, ops.Arity(op.MinInputs, op.MaxInputs))))
	}
	if n := len(o.Outputs); n < op.MinOutputs || (op.MaxOutputs >= 0 && n > op.MaxOutputs) {
		c.add(field.Invalid(path.Child("outputs"), n, fmt.Sprintf("%s gives %s outputs", op.Name, ops.Arity(op.MinOutputs, op.MaxOutputs))))
	}
	out := &Operation{Op: op}
	for i, in := range o.Inputs {
		operand := Operand{Kind: OperandLiteral, Literal: value.OfString(in)}
		switch in {
		case operandInput:
			operand.Kind = OperandInput
		case TemplateIP:
			operand.Kind = OperandIP
		case TemplatePort:
			operand.Kind = OperandPort
		case TemplateSessionKey, TemplateSessionValue:
			if c.p.Session == nil {
				c.add(field.Invalid(path.Child("inputs").Index(i), in, "needs operation.session"))
			}
			operand.Kind = OperandSessionKey
			if in == TemplateSessionValue {
				operand.Kind = OperandSessionValue
			}
		default:
			if ref, ok := c.lookup(in); ok {
				operand = Operand{Kind: OperandVar, Var: ref}
			} else if i == op.RegexInput {
				c.regex(path.Child("inputs").Index(i), in, false)
			}
		}
		out.Inputs = append(out.Inputs, operand)
	}
	for i, name := range o.Outputs {
		if ref, ok := c.variable(path.Child("outputs").Index(i), name); ok {
			out.Outputs = append(out.Outputs, ref)
		}
	}
	return out
}

func (c *compiler) base64(path *field.Path, s string) ([]byte, bool) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		c.add(field.Invalid(path, s, fmt.Sprintf("not valid base64: %v", err)))
		return nil, false
	}
	return b, true
}

func (c *compiler) regex(path *field.Path, expr string, isBase64 bool) *Regexp {
	if isBase64 {
		raw, ok := c.base64(path, expr)
		if !ok {
			return nil
		}
		expr = c.p.Codec.Decode(raw)
	}
	if expr == "" {
		c.add(field.Required(path, "a regular expression"))
		return nil
	}
	re, err := compileRegex(expr)
	if err != nil {
		c.add(field.Invalid(path, expr, explainRegexError(err)))
		return nil
	}
	return re
}

// explainRegexError says why RE2 refused an expression, naming the Python/PCRE features
// Lope rules often use.
func explainRegexError(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "`(?="), strings.Contains(msg, "`(?!"), strings.Contains(msg, "`(?<="), strings.Contains(msg, "`(?<!"):
		return "lookarounds are not supported (RE2 matches in linear time without them); capture the part you need with a group instead: " + msg
	case strings.Contains(msg, "invalid escape sequence: `\\") && len(msg) > 0 && strings.ContainsAny(msg[len(msg)-2:], "123456789"):
		return "backreferences are not supported (RE2): " + msg
	case strings.Contains(msg, "`(?>"):
		return "atomic groups are not supported (RE2): " + msg
	}
	return msg
}

// amplification compiles a rule's amplification: Unbounded is only meaningful where the
// guard applies, a UDP server without DTLS (docs/rules.md §8).
func (c *compiler) amplification(path *field.Path, r *Rule, a v1alpha1.Amplification) {
	switch a {
	case "", v1alpha1.AmplificationBounded:
	case v1alpha1.AmplificationUnbounded:
		if !c.plainUDPServer() {
			c.add(field.Forbidden(path, "the amplification guard bounds only a UDP server's replies (without DTLS): there is nothing to opt out of"))
			return
		}
		r.Unbounded = true
	default:
		c.add(field.NotSupported(path, a, []string{string(v1alpha1.AmplificationBounded), string(v1alpha1.AmplificationUnbounded)}))
	}
}
