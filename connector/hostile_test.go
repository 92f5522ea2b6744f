package connector_test

import (
	"crypto/rand"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/activity"
)

// Hostile peers (docs/hardening.md): every resource a peer can make the connector hold is
// bounded, and what is refused is counted.

// stalledSink is an activity writer that blocks until released, as a file on a full disk or
// a terminal nobody reads: it keeps what it was handed, to count it after.
type stalledSink struct {
	release chan struct{}
	mu      sync.Mutex
	got     []*v1alpha1.ActivityRecord
}

func newStalledSink() *stalledSink { return &stalledSink{release: make(chan struct{})} }

func (s *stalledSink) Write(batch []*v1alpha1.ActivityRecord) error {
	<-s.release
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range batch {
		// Only what the count needs: keeping the records would hold their bytes in the test.
		s.got = append(s.got, &v1alpha1.ActivityRecord{Type: a.Type, Message: a.Message, Evidence: a.Evidence})
	}
	return nil
}

func (s *stalledSink) records() []*v1alpha1.ActivityRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*v1alpha1.ActivityRecord(nil), s.got...)
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// One peer streams 64 MiB at maxInputSize 1 MiB while the activity writer is stalled: the
// register holds at most its byte budget (plus one activity), drops the rest and counts
// every drop, and the ConnectorStopped record says how many.
func TestStreamWithStalledWriterStaysWithinByteBudget(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const (
		budget = 8 << 20
		stream = 64 << 20
		// margin: one activity over the budget (text and base64 of 1 MiB), the connection's
		// 1 MiB read buffer, the peer's 1 MiB write buffer, the runtime's own.
		margin = 8 << 20
	)
	sink := newStalledSink()
	reg := activity.NewRegister(sink, 0, nil)
	reg.SetBudget(budget)
	regDone := make(chan struct{})
	go func() { reg.Run(); close(regDone) }()
	c := newConnector(t, "stream", `operation: {port: 1, maxInputSize: 1048576, interactionTimeout: 1m}`, reg)
	s := serveTCP(t, c, nil)
	before := heapInUse()

	conn, err := net.Dial("tcp4", c.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	_, _ = rand.Read(chunk)
	for range stream / len(chunk) {
		if _, err := conn.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.Close()
	chunk = nil
	// The conversation has ended once the connector has read all of it and seen the close.
	eventually(t, "the conversation to end", func() bool { return c.Stats().Total == 1 && c.Active() == 0 })

	after := heapInUse()
	st := reg.Stats()
	t.Logf("heap grew %d KiB; register holds %d KiB, recorded %d, dropped %d", (int64(after)-int64(before))>>10, st.HeldBytes>>10, st.Recorded, st.Dropped)
	if after > before && after-before > budget+margin {
		t.Errorf("heap grew by %d bytes: over the budget %d + margin %d", after-before, budget, margin)
	}
	if st.HeldBytes > budget+(3<<20) {
		t.Errorf("register holds %d bytes, budget %d", st.HeldBytes, budget)
	}
	if st.Dropped == 0 {
		t.Fatal("nothing dropped: the stream did not reach the budget")
	}

	close(sink.release)
	eventually(t, "the register to drain", func() bool { return reg.Stats().Pending() == 0 })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.result(t); err == nil {
		t.Fatal("Serve returned nil after Close")
	}
	if err := reg.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	<-regDone

	got := sink.records()
	st = reg.Stats()
	last := got[len(got)-1]
	if last.Type != v1alpha1.ActivityConnectorStopped {
		t.Fatalf("last activity written is %s, want ConnectorStopped", last.Type)
	}
	// Every activity produced has a sequence number; the last one written is the last
	// produced. So produced - written are the drops, and the register counted exactly those.
	produced := last.Evidence.Seq
	if st.Written != uint64(len(got)) || st.Recorded+st.Dropped != produced || produced-uint64(len(got)) != st.Dropped {
		t.Errorf("produced %d, written %d (register says %d), dropped %d: the counts do not add up", produced, len(got), st.Written, st.Dropped)
	}
	if want := strconv.FormatUint(st.Dropped, 10) + " activities dropped"; !strings.Contains(last.Message, want) {
		t.Errorf("ConnectorStopped says %q, want it to say %q", last.Message, want)
	}
}
