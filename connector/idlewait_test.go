package connector_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
)

// TestGreetedConnectionsWaitWithoutAGoroutine: plain TCP connections greeted and silent are
// held without a goroutine each (idlewait_linux.go), and each is still answered, and ended
// by its peer, when it speaks.
func TestGreetedConnectionsWaitWithoutAGoroutine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the idle waiter is Linux's")
	}
	h := start(t, `
operation: {port: 1, identifyBy: Address, interactionTimeout: 0s, maxConcurrentConnections: 1000}
conversation:
  greetings: {value: "hi;"}
  rules: [{id: 1, mode: Sync, regex: "PING", response: "PONG;"}]
`)
	h.dial().expect("hi;") // the waiter's goroutine starts with the first connection
	before := runtime.NumGoroutine()
	// The goroutines that greeted them, and read them for Options.FirstInputWait, go back
	// to the connector's idle workers, which keep at most MaxIdleWorkers: well under the
	// reader each that would stay.
	n := 3 * connector.MaxIdleWorkers
	peers := make([]*peer, n)
	for i := range peers {
		peers[i] = h.dial()
		peers[i].expect("hi;")
	}
	eventually(t, "the greeted connections to wait without a goroutine each", func() bool {
		return runtime.NumGoroutine() < before+n/2
	})
	for _, p := range peers {
		p.exchange("PING", "PONG;")
	}
	for _, p := range peers {
		_ = p.conn.Close()
	}
	for _, a := range h.Activities.WaitFor(t, v1alpha1.ActivityEnded, n) {
		if a.Message != "peer closed the connection" {
			t.Errorf("Ended %q", a.Message)
		}
	}
}

// TestRuleClosesASocketWaitingForItsFirstInput: an async rule that closes a socket still
// waiting for its first input (held by the idle waiter, with no reader) ends the
// conversation as it ends one whose reader waits.
func TestRuleClosesASocketWaitingForItsFirstInput(t *testing.T) {
	h := start(t, `
operation: {port: 1, identifyBy: Address, interactionTimeout: 0s}
conversation:
  greetings: {value: "hi;"}
  rules: [{id: 1, mode: Async, onStart: {delay: 100ms}, response: "bye;", closeConnection: true}]
`)
	p := h.dial()
	p.expect("hi;")
	if got := p.expectClosed(); got != "bye;" {
		t.Fatalf("got %q before the close, want the async reply", got)
	}
	a := h.Activities.WaitFor(t, v1alpha1.ActivityEnded, 1)[0]
	if !strings.HasPrefix(a.Message, "socket closed on our side") {
		t.Errorf("Ended %q", a.Message)
	}
}

const idleRules = `
operation: {port: 1, identifyBy: Address, interactionTimeout: 0s}
conversation:
  greetings: {value: "hi;"}
  rules: [{id: 1, mode: Sync, regex: "PING", response: "PONG;"}]
`

// The first input's wait leaves no deadline behind: a connection that spoke within it and
// then stays silent for longer is still read. (The wait is long enough for the first PING
// to come within it on a loaded machine, or the connection is parked and this tests less.)
func TestFirstInputWaitLeavesNoDeadline(t *testing.T) {
	h := start(t, idleRules, func(o *connector.Options) { o.FirstInputWait = time.Second })
	p := h.dial()
	p.expect("hi;")
	p.exchange("PING", "PONG;")
	p.expectSilence(1500 * time.Millisecond)
	p.exchange("PING", "PONG;")
}

// TestFramedConnectionIsReadWhereItWasGreeted: a connection the idle waiter does not hold
// (framed here, as TLS and CEL ones) is read by the goroutine that accepted and greeted it:
// handing its reader to another of the connector's goroutines would leave the first idle,
// a wake-up per connection for nothing.
func TestFramedConnectionIsReadWhereItWasGreeted(t *testing.T) {
	h := start(t, `
operation: {port: 1, identifyBy: Address, framing: {type: Delimiter, delimiter: "\r\n"}}
conversation:
  greetings: {value: "hi;"}
  rules: [{id: 1, mode: Sync, regex: "PING", response: "PONG;"}]
`)
	for range 3 {
		p := h.dial()
		p.expect("hi;")
		p.exchange("PING\r\n", "PONG;")
		p.exchange("PING\r\n", "PONG;")
		if n := connector.IdleWorkers(h.Connector); n != 0 {
			t.Fatalf("%d of the connector's goroutines idle, while each connection's is its reader", n)
		}
	}
}
