package engine

import (
	"testing"

	"github.com/parley-dev/parley/connector/uplink"
	"github.com/parley-dev/parley/sink"
)

// The bound of docs/sinks.md: a sink that keeps up (its queue and the batch it delivers)
// stays inside the window, and the window is a small part of the connector's replay buffer,
// by count and by bytes, so that no sink makes the connector drop activities.
func TestSinkAckWindowBound(t *testing.T) {
	if held := sink.DefaultQueueLength + sink.DefaultMaxBatch; held >= sinkAckWindow {
		t.Errorf("a sink holds up to %d activities, not inside the window of %d", held, sinkAckWindow)
	}
	if 4*sinkAckWindow > uplink.DefaultReplayCapacity {
		t.Errorf("window %d is more than a quarter of the replay buffer (%d)", sinkAckWindow, uplink.DefaultReplayCapacity)
	}
	if 4*sinkAckWindowBytes > uplink.DefaultReplayBytes {
		t.Errorf("window %d bytes is more than a quarter of the replay budget (%d)", sinkAckWindowBytes, uplink.DefaultReplayBytes)
	}
}

func TestSinkHoldsDelayTheAck(t *testing.T) {
	type step struct {
		do      string // "settle A", "settle B", "write A"
		wantAck uint64
	}
	for name, tc := range map[string]struct {
		steps []step
	}{
		"sinks settle in order":                 {steps: []step{{"settle A", 0}, {"settle A", 10}, {"write B", 10}, {"settle B", 20}}},
		"the later batch waits for the earlier": {steps: []step{{"settle B", 0}, {"write B", 0}, {"settle A", 0}, {"settle A", 20}}},
		"batches settled interleaved":           {steps: []step{{"settle B", 0}, {"settle A", 0}, {"write B", 0}, {"settle A", 20}}},
	} {
		t.Run(name, func(t *testing.T) {
			rs := &runState{}
			// Batch A: 1..10, two sink items. Batch B: 11..20, one sink item and one write.
			_, a := rs.admit(1, 10)
			rs.takeIn(a, 100)
			rs.holdSinks(a, 2)
			rs.seal(a, counts{activities: 10})
			_, b := rs.admit(11, 10)
			rs.takeIn(b, 100)
			rs.hold(b)
			rs.holdSinks(b, 1)
			rs.seal(b, counts{activities: 10})
			if acked, _ := rs.takeAck(); acked != 0 {
				t.Fatalf("acked %d before anything settled", acked)
			}
			for _, s := range tc.steps {
				switch s.do {
				case "settle A":
					rs.sinkSettled(a)
				case "settle B":
					rs.sinkSettled(b)
				case "write B":
					rs.release(b, counts{recorded: 1})
				}
				if acked := rs.acked; acked != s.wantAck {
					t.Fatalf("after %s: acked %d, want %d", s.do, acked, s.wantAck)
				}
			}
			if _, c := rs.takeAck(); c.activities != 20 {
				t.Errorf("counts %+v, want 20 activities", c)
			}
		})
	}
}

// A sink that lags more than the window behind the run no longer holds its acknowledgement,
// by count or by bytes; what it settles later changes nothing.
func TestSinkHoldsLetGoOutsideTheWindow(t *testing.T) {
	for name, tc := range map[string]struct {
		n, size int
	}{
		"by count": {n: sinkAckWindow, size: 1000},
		"by bytes": {n: 10, size: sinkAckWindowBytes},
	} {
		t.Run(name, func(t *testing.T) {
			rs := &runState{}
			_, a := rs.admit(1, 1)
			rs.takeIn(a, 100)
			rs.holdSinks(a, 3)
			rs.seal(a, counts{activities: 1})
			// Just inside the window: still held.
			_, b := rs.admit(2, tc.n-1)
			if got := rs.takeIn(b, tc.size-1); got != 0 {
				t.Fatalf("gave up %d inside the window", got)
			}
			rs.holdSinks(b, 1)
			rs.seal(b, counts{activities: int64(tc.n - 1)})
			if rs.acked != 0 {
				t.Fatalf("acked %d inside the window", rs.acked)
			}
			rs.sinkSettled(a) // one of three
			_, c := rs.admit(uint64(tc.n+1), 1)
			if got := rs.takeIn(c, 1); got != 2 {
				t.Fatalf("gave up %d, want the 2 items of the batch outside the window", got)
			}
			rs.seal(c, counts{activities: 1})
			if rs.acked != 1 {
				t.Fatalf("acked %d, want 1: b still waits for its sink", rs.acked)
			}
			rs.sinkSettled(a) // late: nothing changes, nothing goes negative
			if a.waiting != 0 || a.sinkHolds.held != 0 {
				t.Fatalf("a: waiting %d, held %d", a.waiting, a.sinkHolds.held)
			}
			rs.sinkSettled(b)
			if want := uint64(tc.n + 1); rs.acked != want {
				t.Fatalf("acked %d, want %d", rs.acked, want)
			}
		})
	}
}
