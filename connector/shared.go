package connector

import (
	"context"
	"errors"
	"fmt"

	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/sharedmemory"
	"github.com/parley-dev/parley/rules"
	"github.com/parley-dev/parley/rules/value"
)

// Shared variables (docs/rules.md §3, "Shared variables"). A rule that reads or writes
// shared variables runs its conditions, captures, updates, operation and response against
// one snapshot of them and commits its writes atomically: a shared step. The step runs the
// same Go code as any rule, with the conversation's reads and writes redirected to a stage
// (sharedStage) that the store may discard and run again on a conflict; what a step changes
// in connection and global memory and the errors it records are applied only once it
// commits. A step is bounded by Options.SharedStepTimeout: a slow or lost store makes it an
// Error activity, and the rules of that input that need no shared step still answer.

// DefaultSharedStepTimeout bounds one shared step.
const DefaultSharedStepTimeout = time.Second

// startWhenRecheck is the safety re-check of a waiting client, for notifications lost while
// the store's subscription was reconnecting.
const startWhenRecheck = 5 * time.Second

// sharedStage is the view of memory of one attempt of a shared step.
type sharedStage struct {
	tx sharedmemory.Txn
	// local holds the step's writes (every scope), applied to connection and global
	// memory once the step commits.
	local map[varSlot]value.Value
	order []rules.VarRef
	// errs are Error activities to record once the step commits.
	errs []string
	// err is the first failure to read the store; the attempt is abandoned.
	err error
}

type varSlot struct {
	scope rules.Scope
	index int
}

// sharedStep runs fn as one shared step over the variables reads names (prefetched; fn may
// read others). Nested in a step under way, fn is part of it. fn may run more than once and
// must change nothing but memory (through Get and set) and what it resets itself.
func (cv *conversation) sharedStep(reads []int, fn func()) error {
	if cv.stage != nil {
		fn()
		return nil
	}
	p := cv.prog
	names := make([]string, len(reads))
	for i, idx := range reads {
		names[i] = p.Shared[idx].Name
	}
	ctx, cancel := context.WithTimeout(context.Background(), cv.c.opts.SharedStepTimeout)
	defer cancel()
	var st *sharedStage
	err := cv.c.shared.Update(ctx, p.Space, names, func(tx sharedmemory.Txn) error {
		st = &sharedStage{tx: tx, local: map[varSlot]value.Value{}}
		cv.stage = st
		defer func() { cv.stage = nil }()
		fn()
		return st.err
	})
	if err != nil {
		cv.c.sharedFailed(err)
		return err
	}
	cv.c.sharedOK()
	for _, r := range st.order {
		if r.Scope != rules.ScopeShared {
			_ = cv.set(r, st.local[varSlot{r.Scope, r.Index}]) // already converted and bounded
		}
	}
	for _, msg := range st.errs {
		cv.recordError(msg)
	}
	return nil
}

// stagedGet reads r within a step (its own writes first), or a shared variable outside one
// (a read of its own, as an asyncSwitch's conditions or a basic rule's template need); ok is
// false for connection and global variables the step has not written.
func (cv *conversation) stagedGet(r rules.VarRef) (value.Value, bool) {
	st := cv.stage
	if st == nil {
		return cv.readShared(r), true
	}
	if v, ok := st.local[varSlot{r.Scope, r.Index}]; ok {
		return v, true
	}
	if r.Scope != rules.ScopeShared {
		return value.Value{}, false
	}
	decl := cv.prog.Shared[r.Index]
	sv, err := st.tx.Get(r.Name)
	if err != nil {
		if st.err == nil {
			st.err = err
		}
		return decl.Default, true
	}
	v, err := parseShared(decl, sv)
	if err != nil && st.err == nil {
		st.err = err
	}
	return v, true
}

// readShared reads one shared variable outside a step; a failure is an Error activity and
// reads the declared default.
func (cv *conversation) readShared(r rules.VarRef) value.Value {
	decl := cv.prog.Shared[r.Index]
	ctx, cancel := context.WithTimeout(context.Background(), cv.c.opts.SharedStepTimeout)
	defer cancel()
	vals, err := cv.c.shared.View(ctx, cv.prog.Space, []string{r.Name})
	if err != nil {
		cv.c.sharedFailed(err)
		cv.recordError(fmt.Sprintf("shared variable %s: %v (its default is used)", r.Name, err))
		return decl.Default
	}
	cv.c.sharedOK()
	v, err := parseShared(decl, vals[0])
	if err != nil {
		cv.recordError(err.Error() + " (its default is used)")
	}
	return v
}

// parseShared is a stored value read by its variable's type; a missing value is the
// default.
func parseShared(decl *rules.Variable, sv sharedmemory.Value) (value.Value, error) {
	if !sv.Set {
		return decl.Default, nil
	}
	v, err := value.Parse(decl.Kind, sv.Text)
	if err != nil {
		return decl.Default, fmt.Errorf("shared variable %s holds %q, not a %s: %w", decl.Name, sv.Text, decl.Kind, err)
	}
	return v, nil
}

// stagedSet writes r (already converted and bounded) in the step under way, or in a step of
// its own outside one.
func (cv *conversation) stagedSet(r rules.VarRef, v value.Value) {
	st := cv.stage
	if st == nil {
		err := cv.sharedStep([]int{r.Index}, func() { cv.stagedSet(r, v) })
		if err != nil {
			cv.recordError(fmt.Sprintf("shared variable %s not written: %v", r.Name, err))
		}
		return
	}
	slot := varSlot{r.Scope, r.Index}
	if _, seen := st.local[slot]; !seen {
		st.order = append(st.order, r)
	}
	st.local[slot] = v
	if r.Scope == rules.ScopeShared {
		st.tx.Set(r.Name, v.String())
	}
}

// sharedMemoryStep runs a rule's updates and operation as a shared step of their own (an
// async rule's, or one scheduled under memoryUpdateWhen Detected).
func (cv *conversation) sharedMemoryStep(r *rules.Rule, text string) {
	reads := slices.Concat(r.SharedReads, r.SharedWrites)
	if err := cv.sharedStep(reads, func() { cv.applyMemory(r, text) }); err != nil {
		cv.recordError(fmt.Sprintf("rule %d: shared memory step failed, updates and operation not applied: %v", r.ID, err))
	}
}

func usesShared(r *rules.Rule) bool { return len(r.SharedReads) > 0 || len(r.SharedWrites) > 0 }

// sharedReadsOf lists the shared variables of the rules that may fire on text (their regex
// matches), with the conditions of their groups; nil when none needs a shared step.
func (cv *conversation) sharedReadsOf(text string) []int {
	p := cv.prog
	if len(p.Shared) == 0 {
		return nil
	}
	var out []int
	add := func(idx []int) {
		for _, i := range idx {
			if !slices.Contains(out, i) {
				out = append(out, i)
			}
		}
	}
	need := false
	// Only the regexes the prefilter leaves can match are run, as in detect (the
	// workspace's cands hold text's scan).
	c := &cv.work().cands
	for i := c.Next(0); i < len(p.Rules); i = c.Next(i + 1) {
		if r := p.Rules[i]; usesShared(r) && r.Regex.MatchString(text) {
			need = true
			add(r.SharedReads)
			add(r.SharedWrites)
		}
	}
	for _, g := range p.Groups {
		matched := false
		first := g.Slot + 1
		for i := c.Next(first); i < first+len(g.Rules); i = c.Next(i + 1) {
			if r := g.Rules[i-first]; r.Regex.MatchString(text) {
				matched = true
				if usesShared(r) {
					need = true
					add(r.SharedReads)
					add(r.SharedWrites)
				}
			}
		}
		if matched && len(g.SharedReads) > 0 {
			need = true
			add(g.SharedReads)
		}
	}
	if !need {
		return nil
	}
	return out
}

// usable says whether rule r may fire now: not while the store failed this input's step.
func (cv *conversation) usable(r *rules.Rule) bool { return !cv.sharedDown || !usesShared(r) }

// handleSharedInput is handleInput's step for an input that rules on shared variables may
// take: detection, captures, updates, operations and replies run as one shared step, then
// the replies go out and the triggers are scheduled. It returns false when the step failed:
// a, rr and the replies are as they were, for the caller to go on without those rules.
// Session updates run after the step (with memoryUpdateWhen Detected too).
func (cv *conversation) handleSharedInput(s socket, text string, a *v1alpha1.ActivityRecord, rr *v1alpha1.RulesRecord, reads []int) bool {
	p := cv.prog
	alert := a.Alert
	var fired []*rules.Rule
	var reconnectAt []int // before which reply (index into the workspace's ends) a rule reconnects
	err := cv.sharedStep(reads, func() {
		a.Captures, a.Alert, rr.Executed, rr.Basic = nil, alert, nil, ""
		cv.resetReplies()
		reconnectAt = reconnectAt[:0]
		fired = nil
		if strings.Trim(text, "\r\n") == "" {
			cv.basicReply(a, p.Empty)
		} else if fired = slices.Clone(cv.detect(text)); len(fired) == 0 {
			cv.basicReply(a, p.Default)
		}
		for _, r := range fired {
			rr.Executed = append(rr.Executed, r.ID)
			a.Alert = a.Alert || r.Alert
			cv.capture(r, text, a)
			if p.UpdateOnDetected {
				cv.applyMemory(r, text)
			}
		}
		for _, r := range fired {
			if r.ReconnectBefore && cv.reconnects() {
				reconnectAt = append(reconnectAt, len(cv.work().ends))
			}
			cv.appendRuleReply(r)
		}
		if !p.UpdateOnDetected {
			for _, r := range fired {
				cv.applyMemory(r, text)
			}
		}
	})
	if err != nil {
		a.Captures, a.Alert, rr.Executed, rr.Basic = nil, alert, nil, ""
		cv.resetReplies()
		cv.recordError(fmt.Sprintf("shared memory step failed, the rules on shared variables are skipped for this input: %v", err))
		return false
	}
	sent := cv.sendSegments(s, a, reconnectAt, &s)
	ending, closing := false, false
	var from cause // made once a rule schedules, as handleInput does
	for _, r := range fired {
		if p.Session != nil {
			cv.updateSession(r)
		}
		if schedules(r) {
			if from.burst == nil {
				from = newCause("this input", text)
			}
			cv.scheduleFrom(r, from, rr)
		}
		ending = ending || r.Ending
		closing = closing || r.CloseConnection
	}
	cv.finishInput(s, a, sent, ending, closing, fired)
	return true
}

// sendSegments sends the replies gathered in the workspace, reconnecting before the replies
// listed in reconnectAt; *last is the socket in use at the end.
func (cv *conversation) sendSegments(s socket, a *v1alpha1.ActivityRecord, reconnectAt []int, last *socket) int {
	if len(reconnectAt) == 0 {
		return cv.flush(s, a)
	}
	w := cv.work()
	full, ends := slices.Clone(w.wire), slices.Clone(w.ends)
	sent, from := 0, 0
	send := func(upto int) {
		if upto > from {
			base := 0
			if from > 0 {
				base = ends[from-1]
			}
			w.wire = append(w.wire[:0], full[base:ends[upto-1]]...)
			w.ends, w.unbounded = w.ends[:0], w.unbounded[:0]
			for _, e := range ends[from:upto] {
				w.ends = append(w.ends, e-base)
			}
			sent += cv.flush(s, a)
		}
		from = upto
	}
	for _, at := range reconnectAt {
		send(at)
		s = cv.reconnect(a)
	}
	send(len(ends))
	*last = s
	return sent
}

// sharedFailed counts a failed step and records, once per outage, that the store is lost.
func (c *Connector) sharedFailed(err error) {
	c.sharedErrors.Add(1)
	if c.sharedLost.CompareAndSwap(false, true) {
		c.record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityError, RulesRef: &c.current.Load().prog.Ref,
			Message: "shared memory lost: " + err.Error()})
	}
}

// sharedOK notes a step that reached the store, and records the recovery after a loss.
func (c *Connector) sharedOK() {
	if c.sharedLost.CompareAndSwap(true, false) {
		c.record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityError, RulesRef: &c.current.Load().prog.Ref,
			Message: "shared memory recovered"})
	}
}

// SharedMemoryHealthy says whether the last step reached the store; SharedMemoryErrors in
// Stats counts the steps that did not.
func (c *Connector) SharedMemoryHealthy() bool { return !c.sharedLost.Load() }

// initShared writes the program's shared defaults: every one with overwrite (sharedInit:
// Overwrite, at connector start), else only where the store has none.
func (c *Connector) initShared(p *rules.Program, overwrite bool) {
	if len(p.Shared) == 0 {
		return
	}
	entries := make([]sharedmemory.Entry, len(p.Shared))
	for i, v := range p.Shared {
		entries[i] = sharedmemory.Entry{Name: v.Name, Text: v.Initial().String()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.SharedStepTimeout)
	defer cancel()
	if err := c.shared.Init(ctx, p.Space, entries, overwrite); err != nil {
		c.sharedFailed(err)
		c.record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityError, RulesRef: &p.Ref,
			Message: "shared memory: defaults not written: " + err.Error()})
		return
	}
	c.sharedOK()
}

// startTarget is where a client dials once startWhen has held, when it takes the target
// from shared variables.
type startTarget struct {
	ip   string
	port int
}

// waitStart holds a client back until its startWhen conditions hold, re-checking them on
// every change notification of the memory space (and every startWhenRecheck, for
// notifications lost meanwhile), without a deadline: Shutdown or Close end the wait, and
// then it returns false.
func (c *Connector) waitStart(p *rules.Program) bool {
	sub := c.shared.Subscribe(p.Space)
	defer sub.Close()
	tick := time.NewTicker(startWhenRecheck)
	defer tick.Stop()
	since := time.Now()
	var lastErr string
	for {
		held, target, err := c.startWhenHolds(p)
		switch {
		case err != nil:
			c.sharedFailed(err)
			if msg := err.Error(); msg != lastErr {
				lastErr = msg
				c.record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityError, RulesRef: &p.Ref,
					Message: "startWhen: cannot read shared memory, still waiting: " + msg})
			}
		case held:
			c.sharedOK()
			if target != nil {
				c.target.Store(target)
			}
			_, address := c.address(p)
			c.record(&v1alpha1.ActivityRecord{Type: v1alpha1.ActivityConnectorStarted, RulesRef: &p.Ref,
				Message: fmt.Sprintf("operation.startWhen holds after %s: dialing %s/%s", time.Since(since).Round(time.Millisecond), address, p.Transport)})
			return true
		default:
			c.sharedOK()
			lastErr = ""
		}
		select {
		case <-sub.C():
		case <-tick.C:
		case <-c.quit:
			return false
		}
	}
}

// startWhenHolds reads the shared variables of startWhen in one snapshot and says whether
// its conditions hold, and where to dial when it takes the target from them.
func (c *Connector) startWhenHolds(p *rules.Program) (bool, *startTarget, error) {
	sw := p.StartWhen
	names := make([]string, len(sw.Reads))
	for i, idx := range sw.Reads {
		names[i] = p.Shared[idx].Name
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.SharedStepTimeout)
	defer cancel()
	vals, err := c.shared.View(ctx, p.Space, names)
	if err != nil {
		return false, nil, err
	}
	get := func(r rules.VarRef) (value.Value, error) {
		i := slices.Index(sw.Reads, r.Index)
		return parseShared(p.Shared[r.Index], vals[i])
	}
	for _, cd := range sw.Conditions {
		have, err := get(cd.Var)
		if err != nil {
			return false, nil, err
		}
		want := cd.Value
		if cd.From != nil {
			w, err := get(*cd.From)
			if err != nil {
				return false, nil, err
			}
			if want, err = w.Convert(cd.Var.Kind); err != nil {
				return false, nil, nil
			}
		}
		if !have.Equal(want) {
			return false, nil, nil
		}
	}
	if sw.When != nil {
		mem := sharedSnapshot{env: sw.WhenEnv, get: get}
		held, err := sw.When.Bool(sw.WhenEnv.NewActivation(&mem))
		switch {
		case mem.err != nil:
			return false, nil, mem.err
		case err != nil:
			return false, nil, fmt.Errorf("%s: %w", sw.When.Field, err)
		case !held:
			return false, nil, nil
		}
	}
	if sw.IP == nil && sw.Port == nil {
		return true, nil, nil
	}
	ip, port := p.IP, p.Port
	if sw.IP != nil {
		v, err := get(*sw.IP)
		if err != nil {
			return false, nil, err
		}
		ip = v.String()
		if ip == "" {
			return false, nil, nil // not published yet
		}
	}
	if sw.Port != nil {
		v, err := get(*sw.Port)
		if err != nil {
			return false, nil, err
		}
		n, err := strconv.Atoi(v.String())
		if err != nil || n < 1 || n > 65535 {
			return false, nil, errors.New("startWhen: portFromVariable " + sw.Port.Name + " holds " + strconv.Quote(v.String()) + ", not a port")
		}
		port = n
	}
	return true, &startTarget{ip: ip, port: port}, nil
}

// targetAddress applies a startWhen target to a client's dial address.
func (c *Connector) targetAddress(ip string, port int) (string, int) {
	if t := c.target.Load(); t != nil {
		return t.ip, t.port
	}
	return ip, port
}

// sharedSnapshot is what startWhen's CEL expression reads: the shared variables of one
// View. A value the store holds but its type cannot read is kept in err.
type sharedSnapshot struct {
	env *rules.ExprEnv
	get func(rules.VarRef) (value.Value, error)
	err error
}

func (m *sharedSnapshot) ExprValue(slot int) value.Value {
	ref := m.env.Vars[slot]
	v, err := m.get(ref)
	if err != nil {
		m.err = err
		return value.Zero(ref.Kind)
	}
	return v
}
