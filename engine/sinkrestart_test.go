package engine_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/engine"
	"github.com/parley-dev/parley/sink"
)

// waitBuilt waits until the engine of reg has built sink ns/name: it then exports it.
func waitBuilt(t *testing.T, reg *prometheus.Registry, ns, name string) {
	t.Helper()
	eventually(t, "the engine built sink "+name, func() error {
		if _, ok := sinkMetric(t, reg, "parley_engine_sink_queue_length", ns, name); !ok {
			return fmt.Errorf("not yet")
		}
		return nil
	})
}

// At least once across an operator restart: while the receiver is down, the engine does
// not acknowledge what its sink holds; stopped, it leaves those batches to the connector,
// which replays them to the next engine, whose sink delivers them. Every activity reaches
// the receiver, a redelivery only under the same key with the same activity (checked by
// the receiver).
func TestActivitySinkAtLeastOnceAcrossEngineRestart(t *testing.T) {
	// The setup for volume: Activity objects for alerts only (none here), every activity
	// to the sink as its connector sent it.
	f := newFixture(t, func(ec *v1alpha1.ExternalConnector) { ec.Spec.Activities.Record = v1alpha1.RecordAlerts })
	creds := secretFiles(t, f.ns, f.name)
	createSecret(t, f.ns, "hook", map[string]string{sink.KeyHMAC: "k"})
	recv := newHookReceiver(t, "k")
	recv.setDown(true)
	createHookSink(t, f.ns, "siem", recv.srv.URL, nil, v1alpha1.SinkFilter{})
	quick := sink.Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}

	ctx1, stop1 := context.WithCancel(context.Background())
	t.Cleanup(stop1)
	reg1 := prometheus.NewRegistry()
	e1, err := startOperator(ctx1, engine.Options{ActivityQPS: 1000, ActivityBurst: 1000, Registry: reg1, SinkOptions: quick}, false)
	if err != nil {
		t.Fatal(err)
	}
	waitBuilt(t, reg1, f.ns, "siem")
	// A loaded machine delivers slowly: the connector gets the time to see all it sent
	// acknowledged after SIGTERM (within wait, which p.wait allows).
	p := startConnector(t, f.ns, f.name, e1.Address(), creds, "--end-timeout", "40s")
	f.waitServing(t, p)
	stop := make(chan struct{})
	completed := traffic(t, f, 10*time.Millisecond, stop)
	eventually(t, "the first engine's sink failing to deliver", func() error {
		if v, _ := sinkMetric(t, reg1, "parley_engine_sink_failed_total", f.ns, "siem"); v < 3 {
			return fmt.Errorf("%v failed attempts", v)
		}
		if v, _ := sinkMetric(t, reg1, "parley_engine_sink_queue_length", f.ns, "siem"); v < 10 {
			return fmt.Errorf("%v queued", v)
		}
		return nil
	})
	// Held by the sink: not acknowledged, so not counted in the status.
	if total := f.connector(t).Status.Activities.Total; total != 0 {
		t.Fatalf("status.activities.total %d while the sink holds every activity", total)
	}
	stop1()
	time.Sleep(time.Second) // traffic goes on without an engine: the connector buffers
	recv.setDown(false)
	ctx2, stop2 := context.WithCancel(context.Background())
	t.Cleanup(stop2)
	if _, err := startOperator(ctx2, engine.Options{ActivityQPS: 1000, ActivityBurst: 1000, BindAddress: e1.Address(), SinkOptions: quick}, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	close(stop)
	if n := completed(); n < 3 {
		t.Fatalf("only %d conversations completed", n)
	}
	p.signal(t, syscall.SIGTERM)
	if err := p.wait(t); err != nil {
		t.Fatalf("exit %v", err)
	}
	want, dropped := producedBy(t, p)
	if dropped != 0 {
		t.Fatalf("the connector dropped %d activities", dropped)
	}
	var run string
	eventually(t, "every activity delivered", func() error {
		names := recv.names()
		if len(names) == 0 {
			return fmt.Errorf("nothing delivered")
		}
		// <connector>-<run>-<seq>: one run, every seq from 1 to want.
		run = strings.Split(strings.TrimPrefix(names[0], f.name+"-"), "-")[0]
		have := map[string]bool{}
		for _, n := range names {
			have[n] = true
		}
		for seq := 1; seq <= want; seq++ {
			if name := engine.ActivityName(f.name, run, uint64(seq)); !have[name] {
				return fmt.Errorf("%d of %d delivered; %s missing", len(names), want, name)
			}
		}
		if len(names) != want {
			return fmt.Errorf("%d names delivered, want %d", len(names), want)
		}
		return nil
	})
	t.Logf("%d activities delivered, %d redelivered", want, recv.redelivered())
}

// The engine builds every ActivitySink before it serves its first stream: a connector that
// redials at once (a failover, an operator restart) replays what the last engine's sinks
// held, and offered to no sink, those activities would be acknowledged and never delivered
// (what TestActivitySinkAtLeastOnceAcrossEngineRestart found now and then).
func TestSinksAreBuiltBeforeTheEngineServes(t *testing.T) {
	ns := namespace(t)
	createSecret(t, ns, "hook", map[string]string{sink.KeyHMAC: "k"})
	recv := newHookReceiver(t, "k")
	createHookSink(t, ns, "siem", recv.srv.URL, nil, v1alpha1.SinkFilter{})
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	reg := prometheus.NewRegistry()
	e, err := startOperator(ctx, engine.Options{ActivityQPS: 100, ActivityBurst: 100, Registry: reg}, false)
	if err != nil {
		t.Fatal(err)
	}
	<-e.Ready()
	if _, ok := sinkMetric(t, reg, "parley_engine_sink_queue_length", ns, "siem"); !ok {
		t.Fatal("the engine serves before its ActivitySink is built")
	}
}

// A deleted sink no longer holds up its connectors: what it had queued, which it will never
// deliver, is settled, and the batches are acknowledged.
func TestDeletedActivitySinkReleasesTheAcknowledgement(t *testing.T) {
	f := newFixture(t, nil)
	createSecret(t, f.ns, "hook", map[string]string{sink.KeyHMAC: "k"})
	stuck := newHookReceiver(t, "k")
	stuck.hold = make(chan struct{})
	createHookSink(t, f.ns, "stuck", stuck.srv.URL, nil, v1alpha1.SinkFilter{})
	waitBuilt(t, mainMetrics, f.ns, "stuck")
	f.start(t)
	p := f.dial(t)
	p.expect("+OK ready\r\n")
	for range 3 {
		p.say("PING\r\n", "+PONG v1\r\n")
	}
	eventually(t, "three inputs written and queued for the sink", func() error {
		if q, _ := sinkMetric(t, mainMetrics, "parley_engine_sink_queue_length", f.ns, "stuck"); q < 3 {
			return fmt.Errorf("%v queued", q)
		}
		return nil
	})
	if total := f.connector(t).Status.Activities.Total; total != 0 {
		t.Fatalf("status.activities.total %d while the sink holds every activity", total)
	}
	if err := k8s.Delete(context.Background(), &v1alpha1.ActivitySink{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "stuck"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every activity acknowledged", func() error {
		written := len(f.activities(t))
		if st := f.connector(t).Status.Activities; written < 6 || st.Total != int64(written) {
			return fmt.Errorf("status.activities %+v, %d written", st, written)
		}
		return nil
	})
	if n := len(stuck.names()); n != 0 {
		t.Errorf("the deleted sink delivered %d", n)
	}
}
