package lope

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// ruleInfo is a custom rule being converted. A rule left out keeps its entry (with out nil
// and why set) so that references to it are reported rather than mistaken for typos.
type ruleInfo struct {
	path string
	src  *rule
	out  *v1alpha1.Rule
	why  string
	// opUpdates counts the updates at the end of out.Updates that stand for outputs of the
	// operation (memoryOperation), not for the rule's memory.updates.
	opUpdates int
}

// conversation converts the basic rules, then the custom rules in two passes: first every
// rule on its own, then the references between them (trigger, beginning rules, switches,
// loops), which need to know which rules were kept.
func (c *converter) conversation(conv *conversation) v1alpha1.Conversation {
	const p = "conversation."
	var out v1alpha1.Conversation
	out.Greetings = c.basic(p+"greetings", conv.Greetings)
	out.Default = c.basic(p+"default", conv.Default)
	out.Empty = c.basic(p+"empty", conv.Empty)
	out.Timeout = c.basic(p+"timeout", conv.Timeout)
	out.Ending = c.basic(p+"ending", conv.Ending)

	c.byID = map[int32]*ruleInfo{}
	var all []*ruleInfo
	ungrouped := c.ruleList(c.src.rules)
	all = append(all, ungrouped...)
	type groupOut struct {
		g     *v1alpha1.RuleGroup
		rules []*ruleInfo
	}
	var groups []groupOut
	ids := map[string]string{}
	for i, gs := range c.src.groups {
		g, infos := c.group(i, gs, ids)
		all = append(all, infos...)
		groups = append(groups, groupOut{g, infos})
	}
	c.fileOrder(p+"custom_rules.rules", ungrouped)
	for i, g := range groups {
		if g.g != nil {
			c.fileOrder(c.src.groups[i].path+".rules", g.rules)
		}
	}
	for _, info := range all {
		if info.out != nil {
			c.references(info)
		}
	}
	c.rulesInOrder = all
	out.Rules = kept(ungrouped)
	for _, g := range groups {
		if g.g == nil {
			continue
		}
		g.g.Rules = kept(g.rules)
		out.Groups = append(out.Groups, *g.g)
	}
	return out
}

// fileOrder renumbers the rules of one list (the ungrouped rules, or one group's) that match
// inputs so that ascending id, the order Parley tries and answers them in, is their order in
// the file, the order Lope uses: with conversation_use_only_first_hit the first match in the
// file wins, and rules that fire together answer in file order. The list's own ids are
// handed out again in ascending order, so no id clashes with another list's or an async
// rule's. References follow, since they are resolved through the Lope id afterwards.
func (c *converter) fileOrder(path string, infos []*ruleInfo) {
	var matching []*ruleInfo
	var ids []int32
	for _, info := range infos {
		if info.out != nil && info.out.Mode != v1alpha1.RuleAsync {
			matching = append(matching, info)
			ids = append(ids, info.out.ID)
		}
	}
	if sort.SliceIsSorted(ids, func(i, j int) bool { return ids[i] < ids[j] }) {
		return
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var moves []string
	for k, info := range matching {
		if old := info.out.ID; old != ids[k] {
			info.out.ID = ids[k]
			moves = append(moves, fmt.Sprintf("%d→%d", old, ids[k]))
		}
	}
	c.note(path, "ids renumbered, %s: Lope tries rules in file order (the first match wins with conversation_use_only_first_hit, and rules firing together answer in that order), Parley in ascending id; references follow their rules", strings.Join(moves, ", "))
}

func kept(infos []*ruleInfo) []v1alpha1.Rule {
	var out []v1alpha1.Rule
	for _, info := range infos {
		if info.out != nil {
			out = append(out, *info.out)
		}
	}
	return out
}

// basic converts a basic rule. Lope runs one only with enable: yes (its default is no);
// Parley runs every basic rule present, so the others are left out.
func (c *converter) basic(path string, b *basicRule) *v1alpha1.BasicRule {
	if b == nil || !b.Enable.on {
		return nil
	}
	val, ok := c.text(path+".value", b.Value, b.B64Flag.on)
	if !ok {
		c.drop(path+".value", "not valid base64; basic rule left out")
		return nil
	}
	return &v1alpha1.BasicRule{Value: val, Base64: b.B64Flag.on && val != "", Alert: c.alert(path+".alert", b.Alert)}
}

// alert turns Lope's per-channel alert flags into Parley's single flag.
func (c *converter) alert(path string, a *alert) bool {
	if a == nil {
		return false
	}
	var channels []string
	for _, ch := range []struct {
		name string
		f    yesNo
	}{{"all", a.All}, {"email", a.Email}, {"http", a.HTTP}, {"kafka", a.Kafka}, {"syslog", a.Syslog}, {"slack", a.Slack}} {
		if ch.f.on {
			channels = append(channels, ch.name)
		}
	}
	if len(channels) == 0 {
		return false
	}
	c.note(path, "carried as alert: true; where alerts go (%s) is engine configuration in Parley, not part of the rules", strings.Join(channels, ", "))
	return true
}

func (c *converter) ruleList(srcs []ruleSrc) []*ruleInfo {
	var out []*ruleInfo
	for _, rs := range srcs {
		if info := c.register(rs); info != nil {
			c.rule(info)
			out = append(out, info)
		}
	}
	return out
}

// register claims a rule's id; it returns nil for a rule without a usable id.
func (c *converter) register(rs ruleSrc) *ruleInfo {
	r, p := rs.r, rs.path
	switch {
	case !r.ID.set:
		c.drop(p+".id", "a custom rule needs an id; rule left out")
		return nil
	case r.ID.v < 1 || r.ID.v > math.MaxInt32:
		c.drop(p+".id", "%d: Parley rule ids are positive 32-bit integers; rule left out", r.ID.v)
		return nil
	}
	id := int32(r.ID.v)
	if prev := c.byID[id]; prev != nil {
		c.drop(p+".id", "id %d is already used by %s; rule left out", id, prev.path)
		return nil
	}
	info := &ruleInfo{path: p, src: r}
	c.byID[id] = info
	return info
}

// leaveOut drops a registered rule; references to it are reported later.
func (c *converter) leaveOut(info *ruleInfo, path, why string) {
	c.drop(path, "%s; rule left out", why)
	info.out, info.why = nil, path
}

// rule converts everything of a rule but its references to other rules.
func (c *converter) rule(info *ruleInfo) {
	r, p := info.src, info.path
	mode, ok := ruleMode(r.Mode)
	if !ok {
		c.leaveOut(info, p+".mode", fmt.Sprintf("%q is not sync, async or hybrid", r.Mode))
		return
	}
	out := &v1alpha1.Rule{ID: int32(r.ID.v), Mode: mode}
	info.out = out
	if r.Enable.set && !r.Enable.on {
		disabled := false
		out.Enabled = &disabled
		c.note(p+".enable", "Lope runs custom rules whatever enable says (a bug); Parley honours enable: no, so this rule never runs")
	}
	switch {
	case mode == v1alpha1.RuleAsync && r.Regex != "":
		c.note(p+".regex", "async rules never match inputs, so Lope never uses this regex; left out (mode hybrid would match too)")
	case mode != v1alpha1.RuleAsync && r.Regex == "":
		c.leaveOut(info, p+".regex", "a sync or hybrid rule needs a regex")
		return
	case mode != v1alpha1.RuleAsync:
		re, err := c.regex(p+".regex", r.Regex, r.RegexB64.on, matchUse)
		if err != nil {
			c.leaveOut(info, p+".regex", err.Error())
			return
		}
		out.Regex, out.RegexBase64 = re, r.RegexB64.on
	}
	if r.Response != "" {
		resp, ok := c.text(p+".response", r.Response, r.ResponseB64.on)
		if !ok {
			c.leaveOut(info, p+".response", "not valid base64")
			return
		}
		out.Response, out.ResponseBase64 = resp, r.ResponseB64.on
	}
	out.Captures = c.captures(p+".capturing_data", r.CapturingData)
	if m := r.Memory; m != nil {
		out.Conditions = c.conditions(p+".memory.conditions", m.Conditions)
		out.Updates = c.updates(p+".memory.updates", m.Updates)
	}
	var spare []v1alpha1.Update
	out.Operation, spare = c.memoryOperation(p+".builtin_memory_operation", r.BuiltinOperation)
	// Updates run before the operation at the same moment, so those standing for the
	// operation's spare outputs come last and are counted apart from the rule's own.
	out.Updates = append(out.Updates, spare...)
	info.opUpdates = len(spare)
	c.ruleFunction(p+".custom_function", r.CustomFunction, out)
	out.SessionUpdate = c.sessionUpdate(p+".session_update", r.SessionUpdate)
	out.CloseConnection = r.ClosingConnection.on
	if r.ReconnectBefore.on {
		if c.res.Rules.Spec.Operation.Mode == v1alpha1.ModeClient {
			out.ReconnectBefore = true
		} else {
			c.note(p+".reconnect_before_rule_execution", "only client mode reconnects (Lope ignores it in server mode); left out")
		}
	}
	out.Ending = r.EndingRule.on
	out.Alert = c.alert(p+".alert", r.Alert)
	if f := r.Fork; f != nil {
		if f.Enable.on {
			c.drop(p+".fork", "starting more connectors from a rule is not supported (scale the ExternalConnector instead: spec.replicas); the rule runs without it")
		} else {
			c.note(p+".fork", "not enabled; ignored")
		}
	}
}

func ruleMode(s string) (v1alpha1.RuleMode, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "sync":
		return v1alpha1.RuleSync, true
	case "async":
		return v1alpha1.RuleAsync, true
	case "hybrid":
		return v1alpha1.RuleHybrid, true
	}
	return "", false
}

// group converts a group and its rules. A group whose regex RE2 cannot run is left out
// with all its rules: without the regex it would apply to every input. A group left with
// no rule is left out too; its result is then nil.
func (c *converter) group(i int, gs groupSrc, ids map[string]string) (*v1alpha1.RuleGroup, []*ruleInfo) {
	g, p := gs.g, gs.path
	var re string
	var reErr error
	if g.Regex != "" {
		re, reErr = c.regex(p+".regex", g.Regex, g.RegexB64.on, matchUse)
	}
	if reErr != nil {
		c.drop(p+".regex", "%v; the group and its %d rules left out", reErr, len(gs.rules))
		var infos []*ruleInfo
		for _, rs := range gs.rules {
			if info := c.register(rs); info != nil {
				info.why = p + ".regex"
				infos = append(infos, info)
			}
		}
		return nil, infos
	}
	infos := c.ruleList(gs.rules)
	// A group without rules does nothing, in Lope as in Parley; it is left out before it
	// claims its id or has its conditions reported.
	switch {
	case len(gs.rules) == 0:
		c.note(p, "no rules; an empty group does nothing, in Lope as in Parley, so it is left out")
		return nil, infos
	case len(kept(infos)) == 0:
		c.note(p, "none of its rules could be carried over (see above); the group is left out too")
		return nil, infos
	}
	id := strings.TrimSpace(g.ID)
	if id == "" {
		id = fmt.Sprintf("group-%d", i+1)
		c.note(p+".id", "no id; named %s", id)
	}
	if first, dup := ids[id]; dup {
		renamed := id
		for n := 2; ids[renamed] != ""; n++ {
			renamed = fmt.Sprintf("%s-%d", id, n)
		}
		c.note(p+".id", "group id %q is already used by %s; renamed %s", id, first, renamed)
		id = renamed
	}
	ids[id] = p
	out := &v1alpha1.RuleGroup{ID: id, Regex: re, RegexBase64: re != "" && g.RegexB64.on}
	out.Conditions = c.conditions(p+".memory_conditions", g.MemoryConditions)
	// Lope applies a group when its regex matches or its conditions hold, so one with
	// neither never applies; Parley applies such a group to every input. It gets a regex
	// that matches nothing instead: its rules never fire on an input, and its async rules
	// can still be scheduled, as in Lope.
	switch {
	case out.Regex != "" || len(out.Conditions) > 0:
	case len(g.MemoryConditions) == 0:
		out.Regex = neverMatches
		c.note(p, "neither regex nor memory_conditions: Lope never applies such a group, Parley would apply it to every input; imported with the regex %s, which matches nothing, so its rules never fire on an input (they can still be scheduled)", neverMatches)
	default:
		out.Regex = neverMatches
		c.note(p, "none of its memory_conditions could be carried over (see above) and it has no regex; rather than apply it to every input, it is imported with the regex %s, which matches nothing, so its rules never fire on an input (they can still be scheduled)", neverMatches)
	}
	return out, infos
}

// neverMatches is a regex no text matches: a word boundary that is not one.
const neverMatches = `\b\B`
