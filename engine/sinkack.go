package engine

// The acknowledgement of a batch waits for the ActivitySinks as it waits for the Activity
// writes (docs/sinks.md, "At least once"): each sink item holds its batch until the sink
// settles it (delivered, or dropped because the sink's queue was full). Items a sink still
// holds when the engine stops are not settled, so their batches stay unacknowledged and the
// connector replays them to the next engine, which offers them again under the same key.
//
// Acknowledgements go in order, so a sink whose receiver is down would hold every later
// batch of the run too, and the connector's replay buffer would fill and drop new
// activities, those for the other sinks and the Activity objects included. So a sink may
// hold a run's acknowledgement only within a window behind the newest activity received:
// a batch further back is no longer waited for (its items stay queued and are delivered
// while this engine lives; only a restart in that state loses them for that sink).

// The window, well inside the connector's default replay buffer (connector/uplink:
// DefaultReplayCapacity 65,536 activities, DefaultReplayBytes 64 MiB): a quarter of each,
// so that the sinks' holds, the Activity writes behind them and a burst in flight fit.
// A sink's own queue and the batch it delivers (sink.DefaultQueueLength 10,000 plus
// sink.DefaultMaxBatch 500) fit in it, so that a sink that keeps up, however slowly, never
// reaches it.
const (
	sinkAckWindow      = 16384
	sinkAckWindowBytes = 16 << 20
)

// sinkHolds is what one batch waits for from the sinks.
type sinkHolds struct {
	// held counts its sink items not settled yet (each also counts in waiting).
	held int
	// endBytes is the run's receivedBytes once the batch was taken in.
	endBytes uint64
}

// takeIn notes the encoded size of batch b, just admitted, and lets go of the sink holds of
// the batches now outside the window, returning how many items it no longer waits for. The
// caller seals b afterwards, which acknowledges what this freed.
func (rs *runState) takeIn(b *pendingBatch, size int) (givenUp int) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.receivedBytes += uint64(size)
	b.sinkHolds.endBytes = rs.receivedBytes
	for len(rs.sinkHeld) > 0 {
		p := rs.sinkHeld[0]
		// Batches with holds come in the order of their sequence numbers and bytes: the
		// first one inside the window has every later one inside too.
		if p.sinkHolds.held > 0 && rs.received-p.last < sinkAckWindow && rs.receivedBytes-p.sinkHolds.endBytes < sinkAckWindowBytes {
			break
		}
		givenUp += p.sinkHolds.held
		p.waiting -= p.sinkHolds.held
		p.sinkHolds.held = 0
		rs.sinkHeld[0] = nil
		rs.sinkHeld = rs.sinkHeld[1:]
	}
	return givenUp
}

// holdSinks makes b wait for n more sink items; call before they are offered and before b
// is sealed.
func (rs *runState) holdSinks(b *pendingBatch, n int) {
	rs.mu.Lock()
	if b.sinkHolds.held == 0 {
		rs.sinkHeld = append(rs.sinkHeld, b)
	}
	b.waiting += n
	b.sinkHolds.held += n
	rs.mu.Unlock()
}

// sinkSettled records that a sink settled one item of b, and acknowledges what is now
// disposed of. An item of a batch the window let go of changes nothing.
func (rs *runState) sinkSettled(b *pendingBatch) {
	rs.mu.Lock()
	if b.sinkHolds.held == 0 {
		rs.mu.Unlock()
		return
	}
	b.sinkHolds.held--
	b.waiting--
	s, changed := rs.settle()
	rs.mu.Unlock()
	if changed && s != nil {
		s.signalAck()
	}
}
