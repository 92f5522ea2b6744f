package connector_test

import (
	"testing"
	"time"

	"github.com/parley-dev/parley/connector"
)

// A connection that speaks within Options.FirstInputWait of its greeting is read by the
// goroutine that greeted it: the idle waiter never holds it (it never even starts).
func TestConnectionSpeakingAtOnceIsReadWithoutTheIdleWaiter(t *testing.T) {
	h := start(t, idleRules, func(o *connector.Options) { o.FirstInputWait = time.Hour })
	p := h.dial()
	p.expect("hi;")
	p.exchange("PING", "PONG;")
	p.exchange("PING", "PONG;")
	if started, _ := connector.IdleWaiter(h.Connector); started {
		t.Error("the idle waiter held a connection that spoke at once")
	}
}

// A connection silent for FirstInputWait goes to the idle waiter (at once when the wait is
// negative), and is answered when it speaks, and again after a silence longer than the wait.
func TestSilentConnectionGoesToTheIdleWaiter(t *testing.T) {
	for _, wait := range []time.Duration{-1, 20 * time.Millisecond} {
		t.Run(wait.String(), func(t *testing.T) {
			h := start(t, idleRules, func(o *connector.Options) { o.FirstInputWait = wait })
			p := h.dial()
			p.expect("hi;")
			eventually(t, "the connection to be parked", func() bool {
				_, parked := connector.IdleWaiter(h.Connector)
				return parked == 1
			})
			p.exchange("PING", "PONG;")
			p.expectSilence(100 * time.Millisecond)
			p.exchange("PING", "PONG;")
		})
	}
}
