package engine_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
)

func TestRulesEditChangesNewConnectionsOnly(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	f.start(t)
	live := f.dial(t)
	live.expect("+OK ready\r\n")
	live.say("PING\r\n", "+PONG v1\r\n")

	var cr v1alpha1.ConversationRules
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: f.ns, Name: "lines"}, &cr); err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict([]byte(rulesYAML("v2")), &cr.Spec); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Update(ctx, &cr); err != nil {
		t.Fatal(err)
	}
	ev := f.waitEvent(t, "RulesUpdated")
	if !strings.Contains(ev.Note, "generation 2") {
		t.Errorf("RulesUpdated note %q", ev.Note)
	}
	// The push and its compilation take a moment; then every new connection has v2.
	eventually(t, "a new connection answered by the new rules", func() error {
		p := f.dial(t)
		p.expect("+OK ready\r\n")
		if _, err := p.conn.Write([]byte("PING\r\n")); err != nil {
			return err
		}
		line, err := p.r.ReadString('\n')
		if err != nil {
			return err
		}
		if line != "+PONG v2\r\n" {
			return fmt.Errorf("got %q", line)
		}
		return nil
	})
	// The conversation that started on v1 finishes on v1.
	live.say("PING\r\n", "+PONG v1\r\n")

	eventually(t, "activities of generation 2", func() error {
		for _, a := range f.activities(t) {
			if a.Type == v1alpha1.ActivityInput && a.RulesRef != nil && a.RulesRef.Generation == 2 {
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})
}

func TestPauseRefusesAndResumeAccepts(t *testing.T) {
	f := newFixture(t, nil)
	f.start(t)
	live := f.dial(t)
	live.expect("+OK ready\r\n")

	setPaused(t, f, true)
	if ev := f.waitEvent(t, v1alpha1.ReasonPaused); !strings.Contains(ev.Note, "refuse new connections") {
		t.Errorf("Paused note %q", ev.Note)
	}
	eventually(t, "new connections refused", func() error {
		if refused(f) {
			return nil
		}
		return fmt.Errorf("a new connection was greeted")
	})
	// A live conversation goes on while paused.
	live.say("PING\r\n", "+PONG v1\r\n")
	eventually(t, "a Rejected activity", func() error {
		for _, a := range f.activities(t) {
			if a.Type == v1alpha1.ActivityRejected {
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})

	setPaused(t, f, false)
	eventually(t, "new connections accepted again", func() error {
		if !refused(f) {
			return nil
		}
		return fmt.Errorf("still refused")
	})
	if ev := f.waitEvent(t, v1alpha1.ReasonResumed); !strings.Contains(ev.Note, "accept new connections again") {
		t.Errorf("Resumed note %q", ev.Note)
	}
	if n := len(f.events(t, v1alpha1.ReasonPaused)); n != 1 {
		t.Errorf("%d Paused events for one pause, want 1", n)
	}
}

// refused says whether a new connection is closed without a greeting.
func refused(f fixture) bool {
	c, err := net.DialTimeout("tcp", f.addr(), 2*time.Second)
	if err != nil {
		return true
	}
	defer func() { _ = c.Close() }()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 64)
	n, err := c.Read(b)
	return n == 0 && (err == io.EOF || isReset(err))
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "closed"))
}

func setPaused(t *testing.T, f fixture, paused bool) {
	t.Helper()
	ec := f.connector(t)
	// A patch of the field, not an update of what was read: the engine writes the status
	// meanwhile, and an update would conflict with it.
	before := ec.DeepCopy()
	ec.Spec.Paused = paused
	if err := k8s.Patch(context.Background(), ec, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
}

func TestDeleteEndsConversationsAndCompletesTheFinalizer(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	p := f.start(t)
	live := f.dial(t)
	live.expect("+OK ready\r\n")
	live.say("PING\r\n", "+PONG v1\r\n")

	if err := k8s.Delete(ctx, f.connector(t)); err != nil {
		t.Fatal(err)
	}
	// The End order: the live conversation gets its ending, the process flushes, says Bye
	// and holds (a Deployment would restart a container that exits) until it is stopped.
	live.expect("+OK bye\r\n")
	eventually(t, "the process to hold after End", func() error {
		if !strings.Contains(p.logs(), "ended: holding until the pod is deleted") {
			return fmt.Errorf("not holding yet")
		}
		return nil
	})
	p.signal(t, syscall.SIGTERM)
	if err := p.wait(t); err != nil {
		t.Fatalf("the connector exited with %v after End; logs:\n%s", err, p.logs())
	}
	eventually(t, "the connector gone (finalizer completed)", func() error {
		var ec v1alpha1.ExternalConnector
		err := k8s.Get(ctx, f.key(), &ec)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (finalizers %v, phase %s): %v", ec.Finalizers, ec.Status.Phase, err)
	})
}

func TestKilledConnectorIsReflectedInStatus(t *testing.T) {
	f := newFixture(t, nil)
	p := f.start(t)
	live := f.dial(t)
	live.expect("+OK ready\r\n")
	waitConnected(t, f, metav1.ConditionTrue)
	eventually(t, "one active connection", func() error {
		if a := f.connector(t).Status.Connections.Active; a != 1 {
			return fmt.Errorf("active %d", a)
		}
		return nil
	})

	// The gauge changes with the streams, before the status that says so is written.
	if n := metric(t, mainMetrics, "parley_engine_connected_pods", f.ns, f.name); n != 1 {
		t.Errorf("parley_engine_connected_pods %v while the pod streams, want 1", n)
	}

	p.signal(t, syscall.SIGKILL)
	_ = p.wait(t)
	waitConnected(t, f, metav1.ConditionFalse)
	if a := f.connector(t).Status.Connections.Active; a != 0 {
		t.Errorf("active connections %d after the pod died, want 0", a)
	}
	if n, ok := metricSeries(t, mainMetrics, "parley_engine_connected_pods", f.ns, f.name); !ok || n != 0 {
		t.Errorf("parley_engine_connected_pods %v (series %v) after the pod died, want 0", n, ok)
	}
	f.waitEvent(t, "ConnectorLost")

	f.start(t)
	waitConnected(t, f, metav1.ConditionTrue)
	if n := metric(t, mainMetrics, "parley_engine_connected_pods", f.ns, f.name); n != 1 {
		t.Errorf("parley_engine_connected_pods %v after the pod came back, want 1", n)
	}
	eventually(t, "two ConnectorStarted activities (one per process)", func() error {
		n := 0
		for _, a := range f.activities(t) {
			if a.Type == v1alpha1.ActivityConnectorStarted {
				n++
			}
		}
		if n != 2 {
			return fmt.Errorf("%d", n)
		}
		return nil
	})
}

func waitConnected(t *testing.T, f fixture, want metav1.ConditionStatus) {
	t.Helper()
	eventually(t, "EngineConnected "+string(want), func() error {
		c := meta.FindStatusCondition(f.connector(t).Status.Conditions, v1alpha1.ConditionEngineConnected)
		if c == nil || c.Status != want {
			return fmt.Errorf("%+v", c)
		}
		return nil
	})
}
