package connector

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/rules"
	"github.com/parley-dev/parley/rules/ops"
	"github.com/parley-dev/parley/rules/value"
)

// input runs the rules over one input received on s, and returns the conversation that
// took it: in session mode, the input's session id may move the socket to another.
func (cv *conversation) input(s socket, raw []byte, truncated bool) *conversation {
	if cv.prog.Session != nil {
		cv = cv.c.followSession(cv, s, raw)
	}
	cv.mu.Lock()
	defer cv.unlock()
	if !cv.ended {
		cv.handleInput(s, raw, truncated)
	}
	return cv
}

// handleInput is the per-input step of docs/design.md §4. Called with mu held.
func (cv *conversation) handleInput(s socket, raw []byte, truncated bool) {
	p := cv.prog
	now := time.Now() // one clock read for the idle clock and the activity's time
	cv.touch(cv.c.sinceBeganAt(now))
	cv.peerChanged(s) // the input's own socket, whichever joined last
	if cv.greet {
		cv.greet = false
		cv.sendBasic(v1alpha1.ActivityGreeted, s, p.Greetings)
		now = time.Now() // the Input activity comes after the Greeted one, in time too
	}
	ia := cv.inputActivity(now)
	a, rr := &ia.a, &ia.rules
	text := cv.recordInput(&ia.in, raw, truncated)
	cv.exprInput(text, raw)
	if p.TransformInput != nil { // the activity keeps what the peer sent
		text = cv.transformInput(text)
	}
	cv.resetReplies()
	// One scan of the prefilter serves the shared-memory reads and detection.
	p.Prefilter.Scan(text, &cv.work().cands)
	if reads := cv.sharedReadsOf(text); reads != nil {
		if cv.handleSharedInput(s, text, a, rr, reads) {
			return
		}
		// The store failed: the rules that need it are skipped, the others answer.
		cv.sharedDown = true
		defer func() { cv.sharedDown = false }()
	}

	var fired []*rules.Rule
	if strings.Trim(text, "\r\n") == "" {
		cv.basicReply(a, p.Empty)
	} else if fired = cv.detect(text); len(fired) == 0 {
		cv.basicReply(a, p.Default)
	}
	if len(fired) > 0 {
		rr.Executed = ia.executed[:0]
	}
	for _, r := range fired {
		rr.Executed = append(rr.Executed, r.ID)
		a.Alert = a.Alert || r.Alert
		cv.capture(r, text, a)
		if p.UpdateOnDetected {
			cv.applyMemory(r, text)
		}
		if p.Session != nil && p.Session.UpdateOnDetected {
			cv.updateSession(r)
		}
	}
	sent := 0
	for _, r := range fired {
		if r.ReconnectBefore && cv.reconnects() {
			sent += cv.flush(s, a)
			s = cv.reconnect(a)
		}
		cv.appendRuleReply(r)
	}
	sent += cv.flush(s, a)
	ending, closing := false, false
	var from cause // made once a rule schedules: one burst for the whole input
	for _, r := range fired {
		if !p.UpdateOnDetected {
			cv.applyMemory(r, text)
		}
		if p.Session != nil && !p.Session.UpdateOnDetected {
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
}

// finishInput ends an input's step, however its rules ran (handleInput, or a shared step):
// the activity is completed and recorded, the fired rules' framing takes over s, then the
// socket is closed or the conversation ended as they asked.
func (cv *conversation) finishInput(s socket, a *v1alpha1.ActivityRecord, sent int, ending, closing bool, fired []*rules.Rule) {
	replied(a)
	cv.record(a)
	switchFraming(s, fired)
	cv.afterReply(s, sent, ending, closing, fired)
	if cv.pendingTasks() > 0 && !cv.ended && !cv.async.tasks[0].due.After(time.Now()) {
		cv.runDueLocked()
	}
}

// inputRecords are an Input activity and the records it always has, in one allocation.
type inputRecords struct {
	a        v1alpha1.ActivityRecord
	in       v1alpha1.InputRecord
	rules    v1alpha1.RulesRecord
	out      v1alpha1.OutputRecord
	ev       v1alpha1.EvidenceRecord // filled in by the register (Chain.Number)
	executed [1]int32                // room for the one rule that usually fires (nil while none has)
}

// inputActivity starts the activity of an input that arrived at now: it always records the
// input, the rules and what was sent (replied).
func (cv *conversation) inputActivity(now time.Time) *inputRecords {
	ia := &inputRecords{a: v1alpha1.ActivityRecord{
		Time: metav1.NewMicroTime(now), Type: v1alpha1.ActivityInput, Connection: cv.ref, RulesRef: &cv.prog.Ref, Alert: cv.prog.AlertAll,
	}}
	ia.a.Input, ia.a.Rules, ia.a.Output, ia.a.Evidence = &ia.in, &ia.rules, &ia.out, &ia.ev
	return ia
}

// recordInput fills in with raw and returns its text.
func (cv *conversation) recordInput(in *v1alpha1.InputRecord, raw []byte, truncated bool) string {
	in.Bytes, in.Truncated = int32(len(raw)), truncated
	in.Text, in.Base64 = cv.recorded(raw)
	return in.Text
}

// recorded is b as an input or output record holds it: its text in the program's
// encoding, and its base64. With utf-8, whose text is the bytes themselves (invalid ones
// included), the base64 is left empty for the activity register, which fills it in for the
// activities it keeps when its sink reads the evidence (activity.CompleteBase64): one it
// drops at its bounds, under a flood
// of large inputs, never pays for an encoding a third larger than itself (docs/hardening.md
// §1), and the conversation's goroutine does not encode between a reply and the next input.
func (cv *conversation) recorded(b []byte) (text, b64 string) {
	if cv.prog.Encoding == "" || cv.prog.Encoding == v1alpha1.EncodingUTF8 {
		return string(b), ""
	}
	var sb strings.Builder
	sb.Grow(base64.StdEncoding.EncodedLen(len(b)))
	activity.WriteBase64(&sb, b)
	return cv.prog.Codec.Decode(b), sb.String()
}

// schedules says whether a rule that fires schedules async rules (scheduleFrom).
func schedules(r *rules.Rule) bool {
	return len(r.Trigger) > 0 || r.Switch != nil || r.Loop != nil
}

// afterReply applies the socket rules once a reply (sync or async) has gone out on s: the
// input's own socket, or the one an async reply went to.
func (cv *conversation) afterReply(s socket, sent int, ending, closing bool, fired []*rules.Rule) {
	p := cv.prog
	switch {
	case ending:
		cv.finishOn(s, v1alpha1.ActivityEnded, fmt.Sprintf("ending rule %d", endingRule(fired)), p.Ending)
	case closing && p.RuleClosing && s != nil:
		s.close()
	case p.CloseAfterReplying && sent > 0 && s != nil:
		// Sockets gone meanwhile are dropped, so the list stays within the sockets held.
		as := cv.asyncQueue()
		as.closeWhenDone = slices.DeleteFunc(as.closeWhenDone, func(o socket) bool { return o == s || !slices.Contains(cv.socks, o) })
		as.closeWhenDone = append(as.closeWhenDone, s)
		cv.closeIfDone()
	}
}

// reconnects says whether a rule's reconnectBefore reopens the socket: in client mode, with
// rule-triggered closing, over TCP or DTLS (as Lope). A plain UDP socket has no connection to
// renew, so the datagrams keep leaving from the one address the peer knows.
func (cv *conversation) reconnects() bool {
	p := cv.prog
	return p.Mode == v1alpha1.ModeClient && p.RuleClosing && (p.Transport == v1alpha1.TransportTCP || p.TLS.Enabled)
}

func endingRule(fired []*rules.Rule) int32 {
	for _, r := range fired {
		if r.Ending {
			return r.ID
		}
	}
	return 0
}

// closeIfDone closes the sockets answered under closeAfterReplying once no async rule is
// pending, so that the replies of triggered rules go out first. A socket gone meanwhile is
// left alone.
func (cv *conversation) closeIfDone() {
	as := cv.async
	if as == nil || len(as.closeWhenDone) == 0 || len(as.tasks) > 0 {
		return
	}
	for i, s := range as.closeWhenDone {
		if slices.Contains(cv.socks, s) {
			s.close()
		}
		as.closeWhenDone[i] = nil
	}
	as.closeWhenDone = as.closeWhenDone[:0]
}

func (cv *conversation) basicReply(a *v1alpha1.ActivityRecord, b *rules.Basic) {
	if b == nil {
		return
	}
	a.Rules.Basic = b.Name
	a.Alert = a.Alert || b.Alert
	cv.appendReply(b.Template)
}

// resetReplies empties the replies gathered for sending.
func (cv *conversation) resetReplies() {
	w := cv.work()
	w.wire, w.ends, w.unbounded = w.wire[:0], w.ends[:0], w.unbounded[:0]
}

// appendRuleReply appends r's response, marked when r opts out of the UDP amplification
// guard.
func (cv *conversation) appendRuleReply(r *rules.Rule) {
	w := cv.work()
	n := len(w.ends)
	cv.appendReply(r.Response)
	if r.Unbounded && len(w.ends) > n {
		w.unbounded = append(w.unbounded, n)
	}
}

func (cv *conversation) appendReply(t *rules.Template) {
	if t == nil {
		return
	}
	w := cv.work()
	start := len(w.wire)
	w.wire = t.AppendTo(w.wire, cv.prog.Codec, cv)
	if cv.prog.TransformOutput != nil {
		w.wire = cv.transformOutput(w.wire, start)
	}
	w.ends = append(w.ends, len(w.wire))
}

// flush sends the replies gathered so far and returns the bytes sent.
func (cv *conversation) flush(s socket, a *v1alpha1.ActivityRecord) int {
	n := cv.send(s, a)
	cv.resetReplies()
	return n
}

// send writes the workspace's wire (one message per entry of ends) to s, noting failures on
// a.
func (cv *conversation) send(s socket, a *v1alpha1.ActivityRecord) int {
	w := cv.work()
	if len(w.wire) == 0 {
		return 0
	}
	if s == nil {
		note(a, noSocketForReply)
		return 0
	}
	wire, ends := w.wire, w.ends
	_, isUDP := s.(*udpPeer)
	counted := 0
	var slot int64 // the amplification window's slot, read once per reply
	if isUDP {
		slot = cv.c.ampNow()
		if wire, ends, counted = cv.amplificationGuard(a, wire, ends, slot); len(wire) == 0 {
			return 0
		}
	}
	wire, ends = fillLengths(s, a, wire, ends)
	n, err := s.send(wire, ends)
	if isUDP {
		cv.ampWin().sent(slot, min(n, counted))
	}
	cv.wrote(a, wire[:n])
	if err != nil {
		note(a, "send: "+err.Error())
	}
	return n
}

func note(a *v1alpha1.ActivityRecord, msg string) {
	if a.Message == "" {
		a.Message = msg
	} else {
		a.Message += "; " + msg
	}
}

// detect returns the rules that fire on text: ungrouped rules in ascending id, then the
// rules of each applying group. Only the regexes the prefilter leaves can match are run:
// the workspace's cands hold text's scan (handleInput).
func (cv *conversation) detect(text string) []*rules.Rule {
	p := cv.prog
	w := cv.work()
	c := &w.cands
	fired := w.fired[:0]
	for i := c.Next(0); i < len(p.Rules); i = c.Next(i + 1) {
		r := p.Rules[i]
		if r.Regex.MatchString(text) && cv.usable(r) && cv.holds(r.Conditions) && cv.whenOnInput(r, text) {
			fired = append(fired, r)
			if p.OnlyFirstHit {
				w.fired = fired
				return fired
			}
		}
	}
	for _, g := range p.Groups {
		if !cv.groupApplies(g, text) {
			continue
		}
		first := g.Slot + 1
		for i := c.Next(first); i < first+len(g.Rules); i = c.Next(i + 1) {
			r := g.Rules[i-first]
			if r.Regex.MatchString(text) && cv.usable(r) && cv.holds(r.Conditions) && cv.whenOnInput(r, text) {
				fired = append(fired, r)
				if p.OnlyFirstHit {
					w.fired = fired
					return fired
				}
			}
		}
	}
	w.fired = fired
	return fired
}

// groupApplies says whether g's rules are looked at for text; the workspace's cands hold
// text's scan.
func (cv *conversation) groupApplies(g *rules.Group, text string) bool {
	if g.Regex == nil && len(g.Conditions) == 0 {
		return true
	}
	if g.Regex != nil && cv.work().cands.Has(g.Slot) && g.Regex.MatchString(text) {
		return true
	}
	return len(g.Conditions) > 0 && !(cv.sharedDown && len(g.SharedReads) > 0) && cv.holds(g.Conditions)
}

// holds reports whether every condition holds now.
func (cv *conversation) holds(conds []rules.Condition) bool {
	for _, c := range conds {
		want := c.Value
		if c.From != nil {
			w, err := cv.Get(*c.From).Convert(c.Var.Kind)
			if err != nil {
				return false
			}
			want = w
		}
		if !cv.Get(c.Var).Equal(want) {
			return false
		}
	}
	return true
}

func (cv *conversation) capture(r *rules.Rule, text string, a *v1alpha1.ActivityRecord) {
	for _, cp := range r.Captures {
		m := cp.Regex.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		val := m[0]
		if len(m) > 1 {
			val = m[1]
		}
		if err := cv.set(cp.Var, value.OfString(val)); err != nil {
			cv.recordError(fmt.Sprintf("rule %d: capture: %v", r.ID, err))
			continue
		}
		a.Captures = append(a.Captures, v1alpha1.CaptureRecord{Rule: r.ID, Variable: cp.Var.Name, Value: val})
	}
}

// applyMemory runs a rule's updates and operation (as a shared step of their own when they
// touch shared variables and no step is under way).
func (cv *conversation) applyMemory(r *rules.Rule, text string) {
	if cv.stage == nil && usesShared(r) {
		cv.sharedMemoryStep(r, text)
		return
	}
	for i := range r.Updates {
		u := &r.Updates[i]
		v := u.Value
		switch {
		case u.From != nil:
			v = cv.Get(*u.From)
		case u.Expr != nil:
			var ok bool
			if v, ok = cv.exprUpdate(r, u); !ok {
				continue
			}
		}
		if err := cv.set(u.Var, v); err != nil {
			cv.recordError(fmt.Sprintf("rule %d: update: %v", r.ID, err))
		}
	}
	if r.Operation != nil {
		cv.operate(r, text)
	}
}

// operate runs a rule's operation; a failure leaves every output unchanged.
func (cv *conversation) operate(r *rules.Rule, text string) {
	op := r.Operation
	in := make([]value.Value, len(op.Inputs))
	for i, o := range op.Inputs {
		switch o.Kind {
		case rules.OperandVar:
			in[i] = cv.Get(o.Var)
		case rules.OperandInput:
			in[i] = value.OfString(text)
		case rules.OperandIP:
			in[i] = value.OfString(cv.PeerIP())
		case rules.OperandPort:
			in[i] = value.OfInt(int64(cv.peer.Port()))
		case rules.OperandSessionKey:
			in[i] = value.OfString(cv.prog.Session.Key)
		case rules.OperandSessionValue:
			in[i] = value.OfString(cv.session)
		default:
			in[i] = o.Literal
		}
	}
	out, err := op.Op.Run(ops.Env{Codec: cv.prog.Codec}, in, len(op.Outputs))
	if err == nil {
		for i := range min(len(out), len(op.Outputs)) {
			if out[i], err = out[i].Store(op.Outputs[i].Kind); err != nil {
				err = fmt.Errorf("%s: output %s: %w", op.Op.Name, op.Outputs[i].Name, err)
				break
			}
		}
	}
	if err != nil { // the error names the operation
		cv.recordError(fmt.Sprintf("rule %d: %v", r.ID, err))
		return
	}
	for i := range min(len(out), len(op.Outputs)) {
		if err := cv.set(op.Outputs[i], out[i]); err != nil {
			cv.recordError(fmt.Sprintf("rule %d: %s: %v", r.ID, op.Op.Name, err))
		}
	}
}
