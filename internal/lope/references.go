package lope

import (
	"fmt"
	"math"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// references converts what a kept rule schedules. A reference to a rule that was left out,
// does not exist, is disabled or is sync is left out too (and reported), so that the
// output compiles.
func (c *converter) references(info *ruleInfo) {
	r, p, out := info.src, info.path, info.out
	out.Trigger = c.triggers(p+".trigger", r.Trigger)
	if r.BeginningAsyncRule.on {
		if out.Mode == v1alpha1.RuleSync {
			c.drop(p+".beginning_async_rule", "only async and hybrid rules can run at the start of a conversation; left out")
		} else {
			out.OnStart = &v1alpha1.OnStart{Delay: delay(r.BeginningAsyncDelay)}
		}
	}
	out.AsyncSwitch = c.asyncSwitch(p+".async_switch", r.AsyncSwitch)
	out.AsyncLoop = c.asyncLoop(p+".async_loop", r.AsyncLoop)
}

// delay converts a Lope delay; none, zero or negative means at once.
func delay(s seconds) *metav1.Duration {
	if !s.set || s.v <= 0 {
		return nil
	}
	return duration(s.v)
}

func (c *converter) triggers(path string, ts []trigger) []v1alpha1.Trigger {
	var out []v1alpha1.Trigger
	for i, t := range ts {
		if id, ok := c.target(fmt.Sprintf("%s[%d]", path, i), t.RuleID); ok {
			out = append(out, v1alpha1.Trigger{RuleID: id, Delay: delay(t.Delay)})
		}
	}
	return out
}

// target resolves a rule_id that schedules a rule.
func (c *converter) target(path string, id integer) (int32, bool) {
	path += ".rule_id"
	if !id.set {
		c.drop(path, "missing; reference left out")
		return 0, false
	}
	var info *ruleInfo
	if id.v >= 1 && id.v <= math.MaxInt32 {
		info = c.byID[int32(id.v)]
	}
	switch {
	case info == nil:
		c.drop(path, "there is no rule %d; reference left out", id.v)
	case info.out == nil:
		c.drop(path, "rule %d was left out (see %s); reference left out too", id.v, info.why)
	case info.out.Enabled != nil && !*info.out.Enabled:
		c.note(path, "rule %d is disabled (enable: no), so it never runs; reference left out", id.v)
	case info.out.Mode == v1alpha1.RuleSync:
		c.drop(path, "rule %d is a sync rule; only async and hybrid rules can be scheduled; reference left out", id.v)
	default:
		// The rule may have been renumbered to keep Lope's order (fileOrder).
		return info.out.ID, true
	}
	return 0, false
}

func (c *converter) asyncSwitch(path string, sw *asyncSwitch) *v1alpha1.AsyncSwitch {
	if sw == nil {
		return nil
	}
	out := &v1alpha1.AsyncSwitch{}
	for i, o := range sw.Options {
		op := fmt.Sprintf("%s.options[%d]", path, i)
		// An option whose rules were all left out stays: while its conditions hold it still
		// keeps the default from running, as in Lope.
		out.Options = append(out.Options, v1alpha1.SwitchOption{
			Conditions: c.conditions(op+".conditions", o.Conditions),
			Trigger:    c.triggers(op+".rules", o.Rules),
		})
	}
	out.Default = c.triggers(path+".default", sw.Default)
	if len(out.Options) == 0 && len(out.Default) == 0 {
		return nil
	}
	return out
}

func (c *converter) asyncLoop(path string, l *asyncLoop) *v1alpha1.AsyncLoop {
	if l == nil {
		return nil
	}
	out := &v1alpha1.AsyncLoop{Conditions: c.conditions(path+".conditions", l.Conditions)}
	for i, lr := range l.Rules {
		lp := fmt.Sprintf("%s.rules[%d]", path, i)
		id, ok := c.target(lp, lr.RuleID)
		if !ok {
			continue
		}
		n := lr.MaxIterations.v
		if n < 0 || n > math.MaxInt32 {
			c.drop(lp+".max_number_iterations", "%d is not between 0 (no limit) and %d; loop rule left out", n, math.MaxInt32)
			continue
		}
		d := delay(lr.Delay)
		if n == 0 && d == nil {
			c.drop(lp+".delay", "an endless loop without a delay would spin; Parley needs a delay there; loop rule left out")
			continue
		}
		out.Rules = append(out.Rules, v1alpha1.LoopRule{RuleID: id, Delay: d, MaxIterations: int32(n)})
	}
	if len(out.Rules) == 0 {
		if len(l.Rules) > 0 {
			c.drop(path, "no loop rule left; async_loop left out")
		}
		return nil
	}
	return out
}
