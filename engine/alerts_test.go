package engine_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/engine"
)

// Ten different alerts make ten Events, each quoting its own input with the captured value
// masked, related to its Activity; the Activities are labeled as alerts.
func TestEachAlertIsAnEventOfItsOwn(t *testing.T) {
	f := newFixture(t, nil)
	f.start(t)
	p := f.dial(t)
	p.expect("+OK ready\r\n")
	for i := range 10 {
		p.say(fmt.Sprintf("AUTH secret-%d tail-%d\r\n", i, i), "+OK\r\n")
	}
	var notes []string
	eventually(t, "ten RuleAlert events", func() error {
		evs := f.events(t, v1alpha1.ReasonRuleAlert)
		notes = notes[:0]
		for _, ev := range evs {
			notes = append(notes, ev.Note)
		}
		if len(evs) != 10 {
			return fmt.Errorf("%d events: %q", len(evs), notes)
		}
		for _, ev := range evs {
			if ev.Related == nil || ev.Related.Kind != "Activity" || !strings.HasPrefix(ev.Related.Name, f.name+"-") {
				return fmt.Errorf("event %q is not related to its Activity: %+v", ev.Note, ev.Related)
			}
		}
		return nil
	})
	sort.Strings(notes)
	for i, note := range notes {
		if !strings.Contains(note, fmt.Sprintf(`input "AUTH *** tail-%d\r\n"`, i)) || strings.Contains(note, "secret-") {
			t.Errorf("event %d: %q", i, note)
		}
		if !strings.Contains(note, "rules [3]") {
			t.Errorf("event %d names no rule: %q", i, note)
		}
	}
	eventually(t, "ten alert Activities labeled as alerts", func() error {
		n := 0
		for _, a := range f.activities(t) {
			want := "false"
			if a.Alert {
				want, n = "true", n+1
			}
			if got := a.Labels[v1alpha1.LabelAlert]; got != want {
				return fmt.Errorf("%s (%s, alert %v) labeled %s=%q", a.Name, a.Type, a.Alert, v1alpha1.LabelAlert, got)
			}
		}
		if n != 10 {
			return fmt.Errorf("%d alert Activities", n)
		}
		return nil
	})
}

// With redactEvents: false the Events quote inputs as they came.
func TestRedactEventsFalseQuotesInputsWhole(t *testing.T) {
	no := false
	f := newFixture(t, func(ec *v1alpha1.ExternalConnector) { ec.Spec.Activities.RedactEvents = &no })
	f.start(t)
	p := f.dial(t)
	p.expect("+OK ready\r\n")
	p.say("AUTH admin hunter2\r\n", "+OK\r\n")
	if ev := f.waitEvent(t, v1alpha1.ReasonRuleAlert); !strings.Contains(ev.Note, `input "AUTH admin hunter2\r\n"`) {
		t.Errorf("RuleAlert %q", ev.Note)
	}
}

// Beyond the cap, alerts are summed up in one AlertsSuppressed Event with their count.
func TestAlertEventsAreCappedAndSummedUp(t *testing.T) {
	f := newFixture(t, nil)
	creds := secretFiles(t, f.ns, f.name)
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	e, err := startOperator(ctx, engine.Options{ActivityQPS: 100, ActivityBurst: 100, AlertEvents: 3}, false)
	if err != nil {
		t.Fatal(err)
	}
	f.waitServing(t, startConnector(t, f.ns, f.name, e.Address(), creds))
	p := f.dial(t)
	p.expect("+OK ready\r\n")
	for i := range 8 {
		p.say(fmt.Sprintf("AUTH user%d\r\n", i), "+OK\r\n")
	}
	ev := f.waitEvent(t, v1alpha1.ReasonAlertsSuppressed)
	if !strings.Contains(ev.Note, "5 more alerts than the 3 a minute") || ev.Type != "Warning" {
		t.Errorf("AlertsSuppressed %s %q", ev.Type, ev.Note)
	}
	if n := len(f.events(t, v1alpha1.ReasonRuleAlert)); n != 3 {
		t.Errorf("%d RuleAlert events, want 3", n)
	}
}
