package connector_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

func TestTriggerDelaysRunInOrder(t *testing.T) {
	h := start(t, `
operation: {port: 1}
conversation:
  rules:
  - id: 1
    mode: Sync
    regex: "GO"
    response: "now;"
    trigger: [{ruleID: 4, delay: 600ms}, {ruleID: 3, delay: 300ms}, {ruleID: 2}]
  - {id: 2, mode: Async, response: "zero;"}
  - {id: 3, mode: Async, response: "300ms;"}
  - {id: 4, mode: Hybrid, regex: "^HYBRID", response: "600ms;"}
`)
	p := h.dial()
	start := time.Now()
	p.exchange("GO", "now;")
	p.expect("zero;")
	p.expect("300ms;")
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("300ms rule ran after %v", d)
	}
	p.expect("600ms;")
	if d := time.Since(start); d < 600*time.Millisecond || d > 5*time.Second {
		t.Errorf("600ms rule ran after %v", d)
	}
	p.exchange("HYBRID", "600ms;") // a Hybrid rule also matches inputs
	async := h.Activities.WaitFor(t, v1alpha1.ActivityAsync, 3)
	var order []string
	for _, a := range async {
		order = append(order, ids(a.Rules.Async))
	}
	if strings.Join(order, "") != "[2][3][4]" {
		t.Errorf("async order %v", order)
	}
}

func TestOnStartRulesRunAfterGreeting(t *testing.T) {
	h := start(t, `
operation: {port: 1}
conversation:
  greetings: {value: "hi;"}
  rules:
  - {id: 1, mode: Async, onStart: {delay: 200ms}, response: "banner;"}
  - {id: 2, mode: Hybrid, regex: "^never", onStart: {}, response: "first;"}
`)
	// Before the dial: the connector starts the delay when it accepts, which may be before
	// the client's dial returns.
	start := time.Now()
	p := h.dial()
	p.expect("hi;first;banner;")
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("onStart delay not honoured: %v", d)
	}
}

func TestAsyncConditionsAreCheckedWhenTheRuleRuns(t *testing.T) {
	h := start(t, `
operation: {port: 1}
memory:
  connection: [{name: armed, type: bool, default: "true"}]
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "^ARM", response: "armed;", trigger: [{ruleID: 3, delay: 300ms}]}
  - {id: 2, mode: Sync, regex: "DISARM", response: "disarmed;", updates: [{variable: armed, value: "false"}]}
  - {id: 3, mode: Async, conditions: [{variable: armed, value: "true"}], response: "boom;"}
`)
	p := h.dial()
	p.exchange("ARM", "armed;")
	p.exchange("DISARM", "disarmed;")
	p.expectSilence(700 * time.Millisecond)
	if n := len(h.Activities.Of(v1alpha1.ActivityAsync)); n != 0 {
		t.Errorf("%d async activities for a rule whose conditions failed", n)
	}
}

func TestAsyncSwitch(t *testing.T) {
	h := start(t, `
operation: {port: 1}
memory:
  connection: [{name: level, type: int, default: "0"}]
conversation:
  rules:
  - id: 1
    mode: Sync
    regex: "LEVEL (\\d)"
    captures: [{regex: "LEVEL (\\d)", variable: level}]
    asyncSwitch:
      options:
      - {conditions: [{variable: level, value: "1"}], trigger: [{ruleID: 11}]}
      - {conditions: [{variable: level, value: "2"}], trigger: [{ruleID: 12}, {ruleID: 11, delay: 50ms}]}
      default: [{ruleID: 10}]
  - {id: 10, mode: Async, response: "default;"}
  - {id: 11, mode: Async, response: "one;"}
  - {id: 12, mode: Async, response: "two;"}
`)
	p := h.dial()
	p.send("LEVEL 1")
	p.expect("one;")
	p.send("LEVEL 2")
	p.expect("two;one;")
	p.send("LEVEL 7")
	p.expect("default;")
}

func TestAsyncLoopMaxIterations(t *testing.T) {
	h := start(t, `
operation: {port: 1, memoryUpdateWhen: Detected}
memory:
  connection: [{name: beats, type: int, default: "0"}]
conversation:
  rules:
  - id: 1
    mode: Sync
    regex: "START"
    asyncLoop: {rules: [{ruleID: 2, delay: 50ms, maxIterations: 3}]}
  - {id: 2, mode: Async, operation: {name: NBR_SUM, inputs: [beats, "1"], outputs: [beats]}, response: "beat {{beats}};"}
`)
	p := h.dial()
	start := time.Now()
	p.send("START")
	p.expect("beat 1;beat 2;beat 3;")
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("3 iterations 50ms apart took %v", d)
	}
	p.expectSilence(300 * time.Millisecond)
}

func TestAsyncLoopUnboundedStopsWhenConditionsFail(t *testing.T) {
	h := start(t, `
operation: {port: 1, memoryUpdateWhen: Detected}
memory:
  connection: [{name: beats, type: int, default: "0"}, {name: running, type: bool, default: "true"}]
conversation:
  rules:
  - id: 1
    mode: Sync
    regex: "START"
    asyncLoop:
      conditions: [{variable: running, value: "true"}]
      rules: [{ruleID: 2, delay: 40ms}]
  - {id: 2, mode: Async, operation: {name: NBR_SUM, inputs: [beats, "1"], outputs: [beats]}, response: "beat {{beats}};"}
  - {id: 3, mode: Sync, regex: "STOP", updates: [{variable: running, value: "false"}], response: "stopped;"}
`)
	p := h.dial()
	p.send("START")
	p.expect("beat 1;beat 2;beat 3;")
	p.send("STOP")
	// a beat may already be on its way; after "stopped;" nothing else may come
	_ = p.conn.SetReadDeadline(time.Now().Add(wait))
	got, err := p.r.ReadString(';')
	for err == nil && got != "stopped;" {
		got, err = p.r.ReadString(';')
	}
	if err != nil {
		t.Fatal(err)
	}
	p.expectSilence(300 * time.Millisecond)
}

func TestZeroDelayChainIsBounded(t *testing.T) {
	// A zero-delay cycle is refused by the compiler; a zero-delay loop of 64 iterations,
	// each triggering one more rule, still reaches a depth of 65.
	h := start(t, `
operation: {port: 1}
memory:
  connection: [{name: hops, type: int, default: "0"}]
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "GO", asyncLoop: {rules: [{ruleID: 2, maxIterations: 64}]}}
  - {id: 2, mode: Async, operation: {name: NBR_SUM, inputs: [hops, "1"], outputs: [hops]}, trigger: [{ruleID: 4}]}
  - {id: 3, mode: Sync, regex: "HOPS", response: "{{hops}}"}
  - {id: 4, mode: Async}
`)
	p := h.dial()
	h.quiet(p, "GO", 1)
	errs := h.Activities.WaitFor(t, v1alpha1.ActivityError, 1)
	if !strings.Contains(errs[0].Message, "zero-delay") {
		t.Errorf("error: %q", errs[0].Message)
	}
	p.exchange("HOPS", "64")
}

func TestPendingTasksAreBounded(t *testing.T) {
	h := start(t, `
operation: {port: 1, maxInputSize: 65536}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "X", trigger: [{ruleID: 2, delay: 1h}]}
  - {id: 2, mode: Async, response: "late"}
  - {id: 3, mode: Sync, regex: "PING", response: "PONG"}
`)
	p := h.dial()
	for i := 1; i <= 1030; i++ {
		h.quiet(p, "X", i)
	}
	errs := h.Activities.WaitFor(t, v1alpha1.ActivityError, 6)
	if !strings.Contains(errs[0].Message, "1024 async tasks already pending") {
		t.Errorf("error: %q", errs[0].Message)
	}
	p.exchange("PING", "PONG")
}

// With memoryUpdateWhen: Detected, an async rule's updates and operation run when the rule
// is scheduled, as in Lope, not when it runs: the input that schedules it sees them (its
// operation's EXT_IN is that input), and its own run later shows memory as it is then.
func TestDetectedAsyncUpdatesHappenWhenScheduled(t *testing.T) {
	h := start(t, `
operation: {port: 1, memoryUpdateWhen: Detected}
memory:
  connection:
  - {name: v, default: "initial"}
  - {name: seen}
  - {name: runs, type: int}
conversation:
  rules:
  - {id: 10, mode: Sync, regex: "^TRIG", response: "ok;", trigger: [{ruleID: 11, delay: 1h}]}
  - id: 11
    mode: Async
    updates: [{variable: v, value: "updated"}]
    operation: {name: STR_TRIM, inputs: [EXT_IN], outputs: [seen]}
    response: "never;"
  - {id: 12, mode: Sync, regex: "^SHOW", response: "show {{v}} {{seen}} {{runs}};"}
  - {id: 20, mode: Sync, regex: "^LOOP", asyncLoop: {rules: [{ruleID: 21, delay: 50ms, maxIterations: 2}]}}
  - {id: 21, mode: Async, operation: {name: NBR_SUM, inputs: [runs, "1"], outputs: [runs]}, response: "run {{runs}};"}
`)
	p := h.dial()
	p.exchange("SHOW\n", "show initial  0;")
	p.exchange("TRIG now\n", "ok;")
	p.exchange("SHOW\n", "show updated TRIG now 0;")
	// each iteration of a loop is scheduled, and updates, before it runs
	p.send("LOOP\n")
	p.expect("run 1;run 2;")
	p.exchange("SHOW\n", "show updated TRIG now 2;")
	if n := len(h.Activities.Of(v1alpha1.ActivityError)); n != 0 {
		t.Errorf("%d errors", n)
	}
}

// One input sets off at most rules.MaxChainRuns async runs without delay, whatever the
// rules' fan-out, and the cut is one Error activity, not one per refused run. Here each
// level triggers the next twice: 8191 runs without the bound.
func TestAsyncFanOutIsBoundedPerInput(t *testing.T) {
	var spec strings.Builder
	spec.WriteString("operation: {port: 1}\nconversation:\n  rules:\n")
	spec.WriteString("  - {id: 1, mode: Sync, regex: \"^GO\", trigger: [{ruleID: 10}]}\n")
	spec.WriteString("  - {id: 2, mode: Sync, regex: \"^PING\", response: \"PONG\"}\n")
	for id := 10; id < 22; id++ {
		fmt.Fprintf(&spec, "  - {id: %d, mode: Async, response: x, trigger: [{ruleID: %d}, {ruleID: %d}]}\n", id, id+1, id+1)
	}
	spec.WriteString("  - {id: 22, mode: Async, response: x}\n")
	h := start(t, spec.String())
	p := h.dial()
	for n := 1; n <= 2; n++ { // each input has a budget of its own
		p.send("GO\n")
		p.expect(strings.Repeat("x", rules.MaxChainRuns))
		p.expectSilence(300 * time.Millisecond)
		errs := h.Activities.WaitFor(t, v1alpha1.ActivityError, n)
		if len(errs) != n || !strings.Contains(errs[n-1].Message, fmt.Sprintf("more than %d async runs without delay", rules.MaxChainRuns)) {
			t.Fatalf("after GO #%d: %d errors, last %q", n, len(errs), errs[len(errs)-1].Message)
		}
	}
	p.exchange("PING\n", "PONG")
	if n := len(h.Activities.Of(v1alpha1.ActivityAsync)); n != 2*rules.MaxChainRuns {
		t.Errorf("%d async runs, want %d", n, 2*rules.MaxChainRuns)
	}
}
