package sink

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/evidence"
)

// Item is one activity to deliver, with the key receivers deduplicate by: the Activity's
// name in the cluster (<connector>-<run>-<seq>), and in `parley run` the connector, the
// evidence chain and the sequence number (Key).
type Item struct {
	Key    string
	Record *v1alpha1.ActivityRecord
	// Checkpoint, set instead of Record, is a signed checkpoint of the evidence chain of
	// Connector's activities (docs/evidence.md), so that a sink's output verifies with
	// parley verify; Key is then CheckpointKey's.
	Checkpoint *evidence.Checkpoint
	Connector  string
	// Raw, when set, is the activity's JSON as its connector sent it (valid UTF-8, Record's
	// keys only), which the destinations send as is instead of encoding Record again. With
	// Partial, Record holds only what filters and message headers read (connector, time,
	// type, alert, evidence), and a destination that reads more decodes Raw (Activity).
	Raw     []byte
	Partial bool
	// Settle, when set, is called once the item is settled: its destination accepted it, or
	// Offer dropped it (queue full). It is not called for an item the sink still holds when
	// it closes (Leftover returns it, Settle and all): the engine acknowledges a batch to
	// its connector only once every sink has settled its items, so that what a stopped
	// engine held is replayed to the next one (docs/sinks.md). It must not block.
	Settle func()
}

// SettleAll calls the Settle of each item: what a sink delivered or dropped, or what its
// owner gives up (the engine, for a sink deleted with items queued).
func SettleAll(items []Item) {
	for i := range items {
		if f := items[i].Settle; f != nil {
			f()
		}
	}
}

// Activity is the whole activity: Record, or, when Record is partial, decoded from Raw
// (Record itself should Raw not decode: the engine checked only that the fields it does
// not read are valid JSON, not their types).
func (it *Item) Activity() *v1alpha1.ActivityRecord {
	if !it.Partial {
		return it.Record
	}
	a := &v1alpha1.ActivityRecord{}
	if err := json.Unmarshal(it.Raw, a); err != nil {
		return it.Record
	}
	return a
}

// connector is the connector the item is of.
func (it *Item) connector() string {
	if it.Record != nil {
		return it.Record.Connector
	}
	return it.Connector
}

// CheckpointItem is the item of checkpoint cp of connector's chain, keyed
// <connector>-checkpoint-<chain>-<seq>: no Activity has such a name (a run id is hex), and
// a receiver keeps one checkpoint per place in the chain.
func CheckpointItem(connector string, cp *evidence.Checkpoint) Item {
	return Item{Key: connector + "-checkpoint-" + cp.Chain + "-" + itoa(cp.Seq), Checkpoint: cp, Connector: connector}
}

// Key is the deduplication key of an activity that has no object name: connector, evidence
// chain and sequence number, unique and the same on every delivery.
func Key(a *v1alpha1.ActivityRecord) string {
	if a.Evidence == nil {
		return a.Connector
	}
	return a.Connector + "-" + a.Evidence.Chain + "-" + itoa(a.Evidence.Seq)
}

func itoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// Destination sends a batch of items to a receiver. An error means the batch may not have
// arrived: the sink sends it again (at least once). Deliver must return when ctx ends.
type Destination interface {
	Deliver(ctx context.Context, batch []Item) error
	Close() error
}

// Options shape a sink's queue and retries. Zero values take the defaults.
type Options struct {
	// QueueLength bounds the activities waiting; more are dropped and counted. The batch
	// being delivered is held besides.
	QueueLength int
	// MaxBatch is the most activities per delivery.
	MaxBatch int
	// MinBackoff and MaxBackoff bound the wait between attempts at a batch: doubled after
	// each failure, with jitter (a random half to whole of it), from min up to max.
	MinBackoff, MaxBackoff time.Duration
	// Linger, when set, gathers a batch for this long after its first activity (or until
	// MaxBatch): the email destination's digest interval.
	Linger time.Duration
	// MinInterval, when set, spaces deliveries at least this far apart, start to start;
	// meanwhile activities wait in the queue: the email destination's maxPerHour.
	MinInterval time.Duration
	// OnDrop hears of each drop, on the caller's goroutine; it must not block (the engine
	// raises a rate-limited Warning from it).
	OnDrop func(dropped uint64)
}

// Defaults.
const (
	DefaultQueueLength = 10000
	DefaultMaxBatch    = 500
	DefaultMinBackoff  = 100 * time.Millisecond
	DefaultMaxBackoff  = 30 * time.Second
)

// Stats are a sink's counters: delivered activities, delivered checkpoints, dropped
// activities and checkpoints, failed attempts.
type Stats struct {
	Delivered, Checkpoints, Failed, Dropped uint64
	Queued                                  int
	LastError                               string
}

// Sink delivers items to one destination from its own goroutine through a bounded queue:
// Offer never blocks, so a slow or absent receiver costs its own sink drops and nothing
// else.
type Sink struct {
	dest      Destination
	o         Options
	queue     chan Item
	delivered atomic.Uint64
	// checkpoints counts the checkpoints delivered, apart from the activities.
	checkpoints atomic.Uint64
	failed      atomic.Uint64
	dropped     atomic.Uint64
	lastError   atomic.Pointer[string]
	stop        chan struct{}
	done        chan struct{}
	once        sync.Once
	// flushing is closed by Drain: lingering and spacing end, what waits goes out now.
	flushing  chan struct{}
	flushOnce sync.Once
	// abandoned is the batch Run was delivering when the sink closed (Leftover).
	abandoned []Item
}

// New returns a sink in front of dest; start it with Run.
func New(dest Destination, o Options) *Sink {
	if o.QueueLength <= 0 {
		o.QueueLength = DefaultQueueLength
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	return &Sink{dest: dest, o: o, queue: make(chan Item, o.QueueLength), stop: make(chan struct{}), done: make(chan struct{}),
		flushing: make(chan struct{})}
}

// Offer queues items without waiting; what does not fit is dropped, counted and settled.
func (s *Sink) Offer(items ...Item) {
	var dropped uint64
	for _, it := range items {
		select {
		case s.queue <- it:
		default:
			dropped++
			if it.Settle != nil {
				it.Settle()
			}
		}
	}
	if dropped > 0 {
		s.dropped.Add(dropped)
		if s.o.OnDrop != nil {
			s.o.OnDrop(dropped)
		}
	}
}

// Stats returns the counters so far.
func (s *Sink) Stats() Stats {
	st := Stats{Delivered: s.delivered.Load(), Checkpoints: s.checkpoints.Load(), Failed: s.failed.Load(), Dropped: s.dropped.Load(),
		Queued: len(s.queue)}
	if e := s.lastError.Load(); e != nil {
		st.LastError = *e
	}
	return st
}

// Run delivers batches until Close: each batch is retried, with backoff, until it is
// delivered or the sink closes. Call it once, on its own goroutine.
func (s *Sink) Run() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	batch := make([]Item, 0, s.o.MaxBatch)
	var last time.Time
	for {
		if s.o.MinInterval > 0 && !last.IsZero() && !s.sleep(ctx, time.Until(last.Add(s.o.MinInterval))) {
			return
		}
		select {
		case it := <-s.queue:
			batch = append(batch, it)
		case <-s.stop:
			return
		}
		if s.o.Linger > 0 {
			batch = s.linger(batch)
		} else {
			batch = s.fill(batch)
		}
		last = time.Now()
		if !s.deliver(ctx, batch) {
			s.abandoned = batch
			return
		}
		clear(batch)
		batch = batch[:0]
	}
}

// sleep waits d, false when the sink stops first.
func (s *Sink) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.flushing:
		return true
	case <-ctx.Done():
		return false
	}
}

// linger adds to batch what comes within Linger, up to MaxBatch. The sink stopping ends
// it early: the batch is then delivered or left over, as any.
func (s *Sink) linger(batch []Item) []Item {
	t := time.NewTimer(s.o.Linger)
	defer t.Stop()
	for len(batch) < s.o.MaxBatch {
		select {
		case it := <-s.queue:
			batch = append(batch, it)
		case <-t.C:
			return batch
		case <-s.flushing:
			return s.fill(batch)
		case <-s.stop:
			return batch
		}
	}
	return batch
}

func (s *Sink) fill(batch []Item) []Item {
	for len(batch) < s.o.MaxBatch {
		select {
		case it := <-s.queue:
			batch = append(batch, it)
		default:
			return batch
		}
	}
	return batch
}

// deliver tries batch until it is delivered (true) or the sink stops (false).
func (s *Sink) deliver(ctx context.Context, batch []Item) bool {
	backoff := s.o.MinBackoff
	for {
		err := s.dest.Deliver(ctx, batch)
		if err == nil {
			var cps uint64
			for i := range batch {
				if batch[i].Checkpoint != nil {
					cps++
				}
			}
			s.delivered.Add(uint64(len(batch)) - cps)
			s.checkpoints.Add(cps)
			SettleAll(batch)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.failed.Add(1)
		msg := err.Error()
		s.lastError.Store(&msg)
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		}
		backoff = min(2*backoff, s.o.MaxBackoff)
	}
}

// Close stops the sink: the batch being delivered is abandoned (it was not acknowledged;
// the activities stay counted neither delivered nor dropped, and are not settled), Run
// returns, the destination closes. What is queued is not delivered; Drain delivers it first.
func (s *Sink) Close() error {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	return s.dest.Close()
}

// Leftover returns, once the sink is closed, what it did not deliver: the batch it was
// delivering and everything queued, in order, counted neither delivered nor dropped, and not
// settled. The
// engine hands them to the sink it builds in its place when a spec or Secret changes, so
// that a rebuild loses nothing. Offers after Close are not in it.
func (s *Sink) Leftover() []Item {
	<-s.done
	out := append([]Item(nil), s.abandoned...)
	s.abandoned = nil
	for {
		select {
		case it := <-s.queue:
			out = append(out, it)
		default:
			return out
		}
	}
}

// Drain waits until total items (all those offered, activities and checkpoints) are
// delivered or dropped, or ctx ends: at the end of `parley run`, and in tests. From then on the sink neither lingers
// nor spaces its deliveries: an email digest goes out at once.
func (s *Sink) Drain(ctx context.Context, total uint64) error {
	s.flushOnce.Do(func() { close(s.flushing) })
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.delivered.Load()+s.checkpoints.Load()+s.dropped.Load() < total {
		select {
		case <-t.C:
		case <-ctx.Done():
			return errors.Join(ctx.Err(), errors.New("activities still queued for the sink"))
		}
	}
	return nil
}
