// Package activity is the connector's activity register: conversations record activities
// without ever waiting, and one goroutine hands them in batches to a pluggable Sink (a
// terminal, a JSON stream, the engine).
package activity

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/evidence"
)

// Sink receives batches of activities from one goroutine, in the order they were recorded.
// It may block; the register keeps recording (and counting drops) meanwhile.
type Sink interface {
	Write(batch []*v1alpha1.ActivityRecord) error
}

// DefaultCapacity is how many activities may wait for the sink before new ones are dropped.
const DefaultCapacity = 16384

// MaxBatch is the most activities handed to the sink at once; the register holds at most
// its capacity plus one batch.
const MaxBatch = 512

// DefaultLinger is how long the register waits for more activities before handing a batch
// to the sink: a few milliseconds of latency turn one sink write (a syscall, for a file or
// a terminal) per activity into one per batch under load.
const DefaultLinger = 2 * time.Millisecond

// Register is a bounded queue of activities in front of a Sink.
type Register struct {
	queue    chan *v1alpha1.ActivityRecord
	sink     Sink
	stop     chan struct{}
	done     chan struct{}
	recorded atomic.Uint64
	dropped  atomic.Uint64
	written  atomic.Uint64
	failed   atomic.Uint64
	onError  func(error)
	linger   time.Duration
	// chain is where the activities are numbered (in Record, under mu, so that numbers
	// follow the queue's order) and sealed (in Run): a dropped activity keeps its number
	// and shows as a gap (docs/evidence.md).
	chain *evidence.Chain
	mu    sync.Mutex
}

// NewRegister returns a register holding at most capacity waiting activities. onError, if
// set, hears about sink failures (the batch is counted as failed and not retried).
func NewRegister(sink Sink, capacity int, onError func(error)) *Register {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	return &Register{
		queue:   make(chan *v1alpha1.ActivityRecord, capacity),
		sink:    sink,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		onError: onError,
		linger:  DefaultLinger,
		chain:   evidence.NewChain(AppendJSON),
	}
}

// Chain is the id of the register's evidence chain.
func (r *Register) Chain() string { return r.chain.ID() }

// SetLinger changes how long a batch waits for more activities (0: hand each batch over at
// once). Call it before Run.
func (r *Register) SetLinger(d time.Duration) { r.linger = d }

// Record numbers a in the register's evidence chain and queues it; it never blocks: when
// the queue is full, a is dropped and counted, and its number becomes a gap in the chain.
// a belongs to the register from here on.
func (r *Register) Record(a *v1alpha1.ActivityRecord) {
	r.mu.Lock()
	r.chain.Number(a)
	select {
	case r.queue <- a:
		r.recorded.Add(1)
	default:
		r.dropped.Add(1)
	}
	r.mu.Unlock()
}

// Stats are the register's counters.
type Stats struct {
	Recorded, Dropped, Written, Failed uint64
}

// Stats returns the counters so far.
func (r *Register) Stats() Stats {
	return Stats{Recorded: r.recorded.Load(), Dropped: r.dropped.Load(), Written: r.written.Load(), Failed: r.failed.Load()}
}

// Run hands queued activities to the sink until Close, then flushes what is queued and
// returns. Call it once, on its own goroutine.
func (r *Register) Run() {
	defer close(r.done)
	batch := make([]*v1alpha1.ActivityRecord, 0, MaxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case a := <-r.queue:
			batch = r.fill(append(batch, a))
			if len(batch) < MaxBatch && r.linger > 0 {
				batch = r.wait(batch, timer)
			}
			r.write(batch)
			clear(batch)
			batch = batch[:0]
		case <-r.stop:
			for {
				batch = r.fill(batch)
				if len(batch) == 0 {
					return
				}
				r.write(batch)
				clear(batch)
				batch = batch[:0]
			}
		}
	}
}

// wait adds activities to batch for at most the linger time, until the batch is full or the
// register stops.
func (r *Register) wait(batch []*v1alpha1.ActivityRecord, timer *time.Timer) []*v1alpha1.ActivityRecord {
	timer.Reset(r.linger)
	defer timer.Stop()
	for len(batch) < MaxBatch {
		select {
		case a := <-r.queue:
			batch = append(batch, a)
		case <-timer.C:
			return batch
		case <-r.stop:
			return batch
		}
	}
	return batch
}

// fill takes what is already queued, up to a batch, without waiting.
func (r *Register) fill(batch []*v1alpha1.ActivityRecord) []*v1alpha1.ActivityRecord {
	for len(batch) < MaxBatch {
		select {
		case a := <-r.queue:
			batch = append(batch, a)
		default:
			return batch
		}
	}
	return batch
}

func (r *Register) write(batch []*v1alpha1.ActivityRecord) {
	for _, a := range batch {
		r.chain.Seal(a)
	}
	if err := r.sink.Write(batch); err != nil {
		r.failed.Add(uint64(len(batch)))
		if r.onError != nil {
			r.onError(err)
		}
		return
	}
	r.written.Add(uint64(len(batch)))
}

// Close flushes what is queued to the sink and waits for Run to return, or for ctx.
func (r *Register) Close(ctx context.Context) error {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
