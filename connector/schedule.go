package connector

import (
	"container/heap"
	"fmt"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

// task is an async rule waiting to run.
type task struct {
	due   time.Time
	seq   uint64 // keeps tasks due at the same moment in the order they were scheduled
	sched rules.Schedule
	loop  *rules.Loop // set for asyncLoop iterations
	iter  int
	depth int    // length of the chain of zero-delay schedules that led here
	burst *burst // the zero-delay work it belongs to
}

// burst is the async work set off without delay, directly or not, by one input, the start
// of a conversation or one run that came after a delay: rules.MaxChainRuns bounds its runs,
// whatever the rules' fan-out.
type burst struct {
	runs   int // zero-delay schedules made in it
	origin *origin
}

// origin is an input or the start of a conversation, with all it sets off, delays included.
// The first schedule of it that a bound refuses records an Error, the later ones do not, so
// a cut is one activity rather than one per refused run.
type origin struct {
	what    string // "this input", "the start of the conversation"
	refused bool
}

// cause is what schedules rules: an input, the start of a conversation or an async run.
type cause struct {
	depth int // length of the chain of zero-delay schedules that led to it
	burst *burst
	// text is the input ("" for the others): EXT_IN of the operations that
	// memoryUpdateWhen Detected runs as a rule is scheduled.
	text string
}

// newCause is an input (text) or the start of a conversation (what names it).
func newCause(what, text string) cause {
	return cause{burst: &burst{origin: &origin{what: what}}, text: text}
}

// taskQueue is a min-heap of tasks by due time, then scheduling order.
type taskQueue []*task

func (q taskQueue) Len() int { return len(q) }
func (q taskQueue) Less(i, j int) bool {
	if q[i].due.Equal(q[j].due) {
		return q[i].seq < q[j].seq
	}
	return q[i].due.Before(q[j].due)
}
func (q taskQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *taskQueue) Push(x any)   { *q = append(*q, x.(*task)) }
func (q *taskQueue) Pop() any {
	old := *q
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return t
}

// scheduleFrom schedules what a rule that just ran asks for: its triggers, the chosen
// branch of its asyncSwitch and the first iteration of its asyncLoop.
func (cv *conversation) scheduleFrom(r *rules.Rule, from cause, rr *v1alpha1.RulesRecord) {
	for _, t := range r.Trigger {
		cv.schedule(t, from, nil, 0, rr)
	}
	if sw := r.Switch; sw != nil {
		chosen := sw.Default
		for _, o := range sw.Options {
			if cv.holds(o.Conditions) {
				chosen = o.Trigger
				break
			}
		}
		for _, t := range chosen {
			cv.schedule(t, from, nil, 0, rr)
		}
	}
	if r.Loop != nil {
		for _, t := range r.Loop.Rules {
			cv.schedule(t, from, r.Loop, 1, rr)
		}
	}
}

// schedule queues one async run, within the bounds on zero-delay chains, on the runs of a
// burst and on pending tasks; the first refusal of an origin records an Error. With
// memoryUpdateWhen Detected, the rule's updates and operation (and its sessionUpdate with
// session.updateWhen Detected) run now, as Lope runs them when it detects the rule, with
// from's text as EXT_IN.
func (cv *conversation) schedule(sc rules.Schedule, from cause, loop *rules.Loop, iter int, rr *v1alpha1.RulesRecord) {
	depth, b := 0, from.burst
	if sc.Delay == 0 {
		depth = from.depth + 1
	} else {
		b = &burst{origin: b.origin} // it runs later: a burst of its own
	}
	var why string
	switch {
	case depth > maxZeroDelayRun:
		why = fmt.Sprintf("chain of zero-delay triggers deeper than %d", maxZeroDelayRun)
	case sc.Delay == 0 && b.runs >= rules.MaxChainRuns:
		why = fmt.Sprintf("more than %d async runs without delay after one input, start or delayed run", rules.MaxChainRuns)
	case cv.pendingTasks() >= maxPendingTasks:
		why = fmt.Sprintf("%d async tasks already pending", maxPendingTasks)
	}
	if why != "" {
		if o := b.origin; !o.refused {
			o.refused = true
			cv.recordError(fmt.Sprintf("rule %d not scheduled: %s (later refusals of what %s sets off are not recorded)", sc.Rule.ID, why, o.what))
		}
		return
	}
	if sc.Delay == 0 {
		b.runs++
	}
	as := cv.asyncQueue()
	as.seq++
	heap.Push(&as.tasks, &task{due: time.Now().Add(sc.Delay), seq: as.seq, sched: sc, loop: loop, iter: iter, depth: depth, burst: b})
	if rr != nil {
		rr.Scheduled = append(rr.Scheduled, sc.Rule.ID)
	}
	cv.armTasks()
	if cv.prog.UpdateOnDetected {
		cv.applyMemory(sc.Rule, from.text)
	}
	if cv.prog.Session != nil && cv.prog.Session.UpdateOnDetected {
		cv.updateSession(sc.Rule)
	}
}

// armTasks sets the conversation's one timer to the earliest task.
func (cv *conversation) armTasks() {
	as := cv.async
	if as == nil || len(as.tasks) == 0 {
		return
	}
	d := time.Until(as.tasks[0].due)
	if as.timer == nil {
		as.timer = time.AfterFunc(d, func() { cv.c.tasks.run(cv.runDue) })
	} else {
		as.timer.Reset(d)
	}
}

// runDue runs every task that is due, in order, then re-arms the timer.
func (cv *conversation) runDue() {
	cv.mu.Lock()
	defer cv.unlock()
	cv.runDueLocked()
}

// runDueLocked is runDue for a caller that holds cv.mu: the end of an input's handling runs
// the zero-delay rules it scheduled there and then, before the next input (a framed read
// may hold several), as docs/rules.md §5 orders them.
func (cv *conversation) runDueLocked() {
	for !cv.ended && cv.pendingTasks() > 0 && !cv.async.tasks[0].due.After(time.Now()) {
		cv.runTask(heap.Pop(&cv.async.tasks).(*task))
	}
	if cv.ended {
		return
	}
	cv.armTasks()
	cv.closeIfDone()
}

// runTask runs one async rule if its conditions (and its loop's) hold now.
func (cv *conversation) runTask(t *task) {
	p := cv.prog
	r := t.sched.Rule
	if t.loop != nil && !cv.holds(t.loop.Conditions) {
		return
	}
	from := cause{depth: t.depth, burst: t.burst}
	cv.exprNoInput()
	if cv.holds(r.Conditions) && cv.when(r) {
		s := cv.current() // async replies go to the conversation's live socket
		cv.peerChanged(s)
		a := cv.activity(v1alpha1.ActivityAsync)
		rr := &v1alpha1.RulesRecord{Async: []int32{r.ID}}
		a.Rules = rr
		a.Alert = a.Alert || r.Alert
		// With Detected, its updates, operation and sessionUpdate ran when it was scheduled.
		if p.Mode == v1alpha1.ModeClient && r.Response != nil && (s == nil || (r.ReconnectBefore && cv.reconnects())) {
			s = cv.reconnect(a)
		}
		cv.resetReplies()
		cv.appendRuleReply(r)
		sent := cv.flush(s, a)
		if !p.UpdateOnDetected {
			cv.applyMemory(r, "")
		}
		if p.Session != nil && !p.Session.UpdateOnDetected {
			cv.updateSession(r)
		}
		cv.scheduleFrom(r, from, rr)
		replied(a)
		cv.record(a)
		switchFraming(s, []*rules.Rule{r})
		cv.afterReply(s, sent, r.Ending, r.CloseConnection, []*rules.Rule{r})
		if cv.ended {
			return
		}
	}
	if t.loop != nil && (t.sched.MaxIterations == 0 || t.iter < t.sched.MaxIterations) {
		cv.schedule(t.sched, from, t.loop, t.iter+1, nil)
	}
}
