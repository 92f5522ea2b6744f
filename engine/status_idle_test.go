package engine_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// idleWindow spans six connector heartbeats (2 s each) and 24 status intervals of the test
// engine (500 ms): more occasions to write than 30 s of an idle connector in production
// (heartbeats and status writes every 2 s).
const idleWindow = 12 * time.Second

// An idle connector costs the API server no writes: neither the engine (status on change
// only, lastActivityTime in whole seconds) nor the controller touches it while nothing
// happens, whatever heartbeats come in.
func TestIdleConnectorsCauseNoWrites(t *testing.T) {
	f := newFixture(t, nil)
	f.start(t)
	p := f.dial(t)
	p.expect("+OK ready\r\n")
	p.say("PING\r\n", "+PONG v1\r\n")
	var settled *v1alpha1.ExternalConnector
	eventually(t, "the status counts the activity and stops changing", func() error {
		before := f.connector(t)
		if before.Status.Activities.Total == 0 {
			return fmt.Errorf("no activity counted yet")
		}
		time.Sleep(3 * time.Second) // a heartbeat and several status intervals
		after := f.connector(t)
		if after.ResourceVersion != before.ResourceVersion {
			return fmt.Errorf("still changing: resourceVersion %s then %s", before.ResourceVersion, after.ResourceVersion)
		}
		settled = after
		return nil
	})
	time.Sleep(idleWindow)
	if now := f.connector(t); now.ResourceVersion != settled.ResourceVersion {
		t.Errorf("an idle connector was written: resourceVersion %s became %s\nbefore: %+v\nafter:  %+v",
			settled.ResourceVersion, now.ResourceVersion, settled.Status, now.Status)
	}
}
