package engine

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"github.com/parley-dev/parley/api/v1alpha1"
)

// connectorState is what the engine knows of one ExternalConnector: its open streams and the
// counters it adds to the connector's status. Guarded by its own mutex.
type connectorState struct {
	key types.NamespacedName

	mu      sync.Mutex
	streams map[*stream]struct{}
	// counts accumulated since this engine started; base is the status as first read, so
	// that counters survive operator restarts (status.x = base.x + counts.x).
	counts counts
	base   *counts
	// lastActivity is the time of the newest activity received.
	lastActivity time.Time
	// dirty says the status needs a patch.
	dirty bool
	// connected is the EngineConnected condition last applied, which the cache may not have
	// yet: the next one keeps its lastTransitionTime while its status does not change.
	connected *metav1.Condition
	// sharedReady is the SharedMemoryReady condition last applied, kept for the same reason,
	// and to announce the store's loss and recovery once each.
	sharedReady *metav1.Condition
	// announcedHash is the rules hash last announced with a RulesUpdated event.
	announcedHash string
	// announcedPaused is the pause state last announced with a Paused or Resumed event.
	announcedPaused *bool
	// alertEvents caps the connector's alert Events; suppressedAlerts counts the alerts
	// it held back since the last AlertsSuppressed event, sent at lastSuppressedEvent.
	alertEvents         *rate.Limiter
	suppressedAlerts    int64
	lastSuppressedEvent time.Time
	// lastDropWarning rate-limits the ActivitiesDropped event.
	lastDropWarning     time.Time
	droppedSinceWarning int64
}

// counts are the status counters the engine owns.
type counts struct {
	activities, recorded, dropped  int64
	connections, rejected, evicted int64
	// status.datagrams: rateLimited, and dropped for lack of room.
	rateLimited, datagramsDropped int64
}

func (c counts) plus(o counts) counts {
	return counts{c.activities + o.activities, c.recorded + o.recorded, c.dropped + o.dropped,
		c.connections + o.connections, c.rejected + o.rejected, c.evicted + o.evicted,
		c.rateLimited + o.rateLimited, c.datagramsDropped + o.datagramsDropped}
}

func countsOf(st *v1alpha1.ExternalConnectorStatus) counts {
	c := counts{st.Activities.Total, st.Activities.Recorded, st.Activities.Dropped,
		st.Connections.Total, st.Connections.Rejected, st.Connections.Evicted, 0, 0}
	if d := st.Datagrams; d != nil {
		c.rateLimited, c.datagramsDropped = d.RateLimited, d.Dropped
	}
	return c
}

// connector returns the state of key, making it on first use.
func (e *Engine) connector(key types.NamespacedName) *connectorState {
	e.mu.Lock()
	defer e.mu.Unlock()
	cs := e.connectors[key]
	if cs == nil {
		cs = &connectorState{key: key, streams: map[*stream]struct{}{}}
		e.connectors[key] = cs
	}
	return cs
}

// lookup returns the state of key if the engine has one.
func (e *Engine) lookup(key types.NamespacedName) *connectorState {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.connectors[key]
}

// add updates the counters under the connector's lock and marks the status dirty.
func (cs *connectorState) add(f func(*connectorState)) {
	cs.mu.Lock()
	f(cs)
	cs.dirty = true
	cs.mu.Unlock()
}

// active sums the live connections the connector's streams last reported.
func (cs *connectorState) active() int64 {
	var n int64
	for s := range cs.streams {
		n += s.active.Load()
	}
	return n
}

// runKey names one connector process: activities are numbered per process.
type runKey struct {
	connector types.NamespacedName
	run       string
}

// runState follows one connector process's activities across its reconnections: which
// sequence numbers have been taken in, and which are disposed of (written, filtered,
// dropped) and may be acknowledged. Acks go to whichever stream the process has open.
type runState struct {
	mu sync.Mutex
	// received is the highest sequence number taken in; replays up to it are skipped.
	received uint64
	// acked is the highest sequence number whose activities, and all before it, are disposed of.
	acked   uint64
	pending []*pendingBatch
	// uncounted is what the batches acknowledged since the last Ack sent add to the status:
	// an activity counts in the status of the engine that tells its connector it is
	// acknowledged, so that one replayed to the next leader counts once.
	uncounted counts
	current   *stream
	// heartbeat is the last one received, for the connection counters' deltas.
	heartbeat *enginev1.Heartbeat
	known     bool
	// receivedBytes sums the encoded activities taken in, and sinkHeld lists the batches
	// that sinks hold, in order, for the sinks' window (sinkack.go).
	receivedBytes uint64
	sinkHeld      []*pendingBatch
}

// pendingBatch is a run of sequence numbers waiting for writes to finish.
type pendingBatch struct {
	last uint64
	// waiting counts the writes not finished, and the receiver itself until it seals the
	// batch: a batch whose writes are not all queued yet must not be acknowledged.
	waiting int
	// counts is what the batch adds to the status once acknowledged.
	counts counts
	// sinkHolds is what the batch waits for from the ActivitySinks (sinkack.go).
	sinkHolds sinkHolds
}

// run returns the state of a connector process, making it on first use.
func (e *Engine) run(key runKey) *runState {
	e.mu.Lock()
	defer e.mu.Unlock()
	rs := e.runs[key]
	if rs == nil {
		rs = &runState{}
		e.runs[key] = rs
	}
	return rs
}

// forgetRun drops a process that said Bye, or whose connector is gone.
func (e *Engine) forgetRun(key runKey) {
	e.mu.Lock()
	delete(e.runs, key)
	e.mu.Unlock()
}

// admit takes in a batch: it returns, for each activity, whether it is new (not a replay of
// one already taken in), and the pendingBatch that its writes must complete before the batch
// may be acknowledged.
func (rs *runState) admit(first uint64, n int) (isNew func(i int) bool, b *pendingBatch) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if !rs.known {
		// A process this engine has not seen (or has forgotten, as after a restart):
		// everything before its first batch was acknowledged elsewhere.
		rs.known = true
		rs.received, rs.acked = first-1, first-1
	}
	from := rs.received
	last := first + uint64(n) - 1
	if n > 0 && last > rs.received {
		rs.received = last
	}
	b = &pendingBatch{last: last, waiting: 1}
	rs.pending = append(rs.pending, b)
	return func(i int) bool { return first+uint64(i) > from }, b
}

// continueHeartbeats takes the last heartbeat a process sent on an earlier stream as the
// one its next heartbeat's totals are counted from, unless this engine has one of its own:
// the connection and drop totals up to it were counted by the engine it was sent to (a
// former leader), and counting them again would double them.
func (rs *runState) continueHeartbeats(last *enginev1.Heartbeat) {
	rs.mu.Lock()
	if rs.heartbeat == nil {
		rs.heartbeat = last
	}
	rs.mu.Unlock()
}

// hold counts one more write the batch waits for; call before the batch is sealed.
func (rs *runState) hold(b *pendingBatch) {
	rs.mu.Lock()
	b.waiting++
	rs.mu.Unlock()
}

// release records that one write of b finished (or was given up), with what it adds to the
// status, and acknowledges what is now disposed of, in order.
func (rs *runState) release(b *pendingBatch, add counts) {
	rs.mu.Lock()
	b.waiting--
	b.counts = b.counts.plus(add)
	s, changed := rs.settle()
	rs.mu.Unlock()
	if changed && s != nil {
		s.signalAck()
	}
}

// seal is called once every write of b is queued, with the activities it took in: a batch
// with nothing to wait for is acknowledged at once. It always signals, so that a replay of
// activities already acknowledged (whose ack the connector missed) is acknowledged again.
func (rs *runState) seal(b *pendingBatch, add counts) {
	rs.mu.Lock()
	b.waiting--
	b.counts = b.counts.plus(add)
	s, _ := rs.settle()
	rs.mu.Unlock()
	if s != nil {
		s.signalAck()
	}
}

// settle pops finished batches from the front; the caller holds mu.
func (rs *runState) settle() (*stream, bool) {
	changed := false
	for len(rs.pending) > 0 && rs.pending[0].waiting == 0 {
		if rs.pending[0].last > rs.acked {
			rs.acked = rs.pending[0].last
			changed = true
		}
		rs.uncounted = rs.uncounted.plus(rs.pending[0].counts)
		rs.pending[0] = nil
		rs.pending = rs.pending[1:]
	}
	return rs.current, changed
}

// takeAck is the sequence number to acknowledge now, and what the activities up to it that
// no Ack has covered yet add to the status: the caller counts them once the Ack is sent, or
// gives them back with untake when it could not be.
func (rs *runState) takeAck() (uint64, counts) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	c := rs.uncounted
	rs.uncounted = counts{}
	return rs.acked, c
}

// untake gives back counts of an Ack that could not be sent: the stream broke, and the
// process replays those activities to this engine (which acknowledges them again and counts
// them then) or to another one (which counts them itself).
func (rs *runState) untake(c counts) {
	rs.mu.Lock()
	rs.uncounted = rs.uncounted.plus(c)
	rs.mu.Unlock()
}
