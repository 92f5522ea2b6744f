package engine

import (
	"context"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// The write queue is bounded by bytes as well as by count: activities carrying large inputs
// are refused (and counted as queue_full) once the budget is held, and every byte comes back
// when the items are disposed of. The writer is not run until the end, as an API server
// that does not answer would leave it: nothing here reaches a client.
func TestWriteQueueBoundedByBytes(t *testing.T) {
	m, err := newEngineMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	w := newWriter(nil, Options{ActivityQueue: 1000, ActivityQueueBytes: 1 << 20, ActivityQPS: 1, ActivityBurst: 1, Writers: 1}, m, logr.Discard())
	in := strings.Repeat("x", 100<<10)
	results := map[writeResult]int{}
	for range 100 {
		act := &v1alpha1.Activity{ActivityRecord: v1alpha1.ActivityRecord{Type: v1alpha1.ActivityInput,
			Input: &v1alpha1.InputRecord{Text: in, Base64: in}}}
		w.enqueue(writeItem{act: act, done: func(r writeResult) { results[r]++ }})
	}
	if got := w.held.Load(); got > 1<<20 {
		t.Fatalf("queue holds %d bytes, budget %d", got, 1<<20)
	}
	if results[writeQueueFull] != 95 || len(w.queue) != 5 {
		t.Fatalf("%d refused, %d queued: want 95 and 5 (200 KiB each in 1 MiB)", results[writeQueueFull], len(w.queue))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w.run(ctx) // stops at once: what is queued is abandoned, and its bytes given back
	if results[writeAbandoned] != 5 || w.held.Load() != 0 {
		t.Fatalf("%d abandoned, %d bytes still held", results[writeAbandoned], w.held.Load())
	}
}
