// Package activity is the connector's activity register: conversations record activities
// without ever waiting, and one goroutine hands them in batches to a pluggable Sink (a
// terminal, a JSON stream, the engine).
package activity

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"
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

// EvidenceReader is a Sink that says whether it reads the evidence the register seals into
// each activity (its previous and own hash), and with it the record the hash is of, whose
// input and output carry their base64 (CompleteBase64). Sealing is a canonical encoding and
// a SHA-256 per activity, about a tenth of a busy connector's CPU (docs/performance.md §5),
// and the base64 a string a third larger than the payload: both wasted where nothing shows
// them, a terminal table or nothing at all (-o none). A sink that reads no evidence gets an
// input or output in utf-8 as its text alone, which holds its bytes.
type EvidenceReader interface {
	ReadsEvidence() bool
}

// ReadsEvidence says whether s reads the activities' evidence: true unless s is an
// EvidenceReader that says otherwise, so a sink that does not tell gets it sealed.
func ReadsEvidence(s Sink) bool {
	if r, ok := s.(EvidenceReader); ok {
		return r.ReadsEvidence()
	}
	return true
}

// DefaultCapacity is how many activities may wait for the sink before new ones are dropped.
const DefaultCapacity = 16384

// DefaultBudget is how many bytes of activities (v1alpha1.ActivityRecord.ApproxSize) may wait
// for the sink, the batch in its hands included, before new ones are dropped: a peer that
// streams at maxInputSize fills a count-bounded queue with copies of its bytes long before
// the count is reached (docs/hardening.md).
const DefaultBudget = 64 << 20

// MaxBatch is the most activities handed to the sink at once; the register holds at most
// its capacity plus one batch, and at most its budget plus one activity.
const MaxBatch = 512

// DefaultLinger is how long the register waits for more activities before handing a batch
// to the sink: a few milliseconds of latency turn one sink write (a syscall, for a file or
// a terminal) per activity into one per batch under load.
const DefaultLinger = 2 * time.Millisecond

// Register is a bounded queue of activities in front of a Sink.
type Register struct {
	queue    chan queued
	sink     Sink
	stop     chan struct{}
	done     chan struct{}
	recorded atomic.Uint64
	dropped  atomic.Uint64
	written  atomic.Uint64
	failed   atomic.Uint64
	// held is the size of the activities queued or in the sink's hands; budget bounds it.
	held    atomic.Int64
	budget  int64
	onError func(error)
	linger  time.Duration
	// chain is where the activities are numbered (in Record, under mu, so that numbers
	// follow the queue's order) and sealed (in Run): a dropped activity keeps its number
	// and shows as a gap (docs/evidence.md). seal is false when the sink reads no
	// evidence: the activities are numbered but not hashed.
	chain *evidence.Chain
	seal  bool
	mu    sync.Mutex
	// wakes counts the activities taken from the queue by a register parked on it (each
	// starting its rounds), for the tests of rounds.
	wakes atomic.Uint64
}

// queued is an activity with the size it was counted at, given back once it is written.
type queued struct {
	a    *v1alpha1.ActivityRecord
	size int64
}

// NewRegister returns a register holding at most capacity waiting activities. onError, if
// set, hears about sink failures (the batch is counted as failed and not retried).
func NewRegister(sink Sink, capacity int, onError func(error)) *Register {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	return &Register{
		queue:   make(chan queued, capacity),
		budget:  DefaultBudget,
		sink:    sink,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		onError: onError,
		linger:  DefaultLinger,
		chain:   evidence.NewChain(AppendCanonicalJSON),
		seal:    ReadsEvidence(sink),
	}
}

// Chain is the id of the register's evidence chain.
func (r *Register) Chain() string { return r.chain.ID() }

// SetLinger changes how long a batch waits for more activities (0: hand each batch over at
// once). Call it before Run.
func (r *Register) SetLinger(d time.Duration) { r.linger = d }

// SetBudget changes how many bytes of activities may wait (0 or less: DefaultBudget). Call
// it before Run.
func (r *Register) SetBudget(bytes int64) {
	if bytes <= 0 {
		bytes = DefaultBudget
	}
	r.budget = bytes
}

// Record numbers a in the register's evidence chain and queues it (an input or output given
// as text alone gets its base64 once taken, for a sink that reads the evidence:
// CompleteBase64); it never blocks: when the queue is full (by count, or by bytes: an
// activity that would take the register over its budget, unless nothing is held), a is
// dropped and counted, and its number becomes a gap in the chain. a belongs to the register
// from here on.
func (r *Register) Record(a *v1alpha1.ActivityRecord) {
	size := int64(a.ApproxSize())
	r.mu.Lock()
	r.chain.Number(a)
	if held := r.held.Load(); held > 0 && held+size > r.budget {
		r.dropped.Add(1)
		r.mu.Unlock()
		return
	}
	select {
	case r.queue <- queued{a, size}:
		r.held.Add(size)
		r.recorded.Add(1)
	default:
		r.dropped.Add(1)
	}
	r.mu.Unlock()
}

// CompleteBase64 fills in the base64 of a's input and output where they hold their bytes
// as text alone (Base64 empty, Text not: a connector reading utf-8, whose text is the bytes,
// invalid ones included, leaves them so): the register does it for the activities it keeps,
// before they are sealed and written, when its sink reads the evidence (EvidenceReader), so
// that those it drops never pay for it, nor the conversation's goroutine, between a reply
// and the next input. Any other activity is left as it is.
func CompleteBase64(a *v1alpha1.ActivityRecord) {
	if in := a.Input; in != nil {
		in.Base64 = completed(in.Text, in.Base64)
	}
	if out := a.Output; out != nil {
		out.Base64 = completed(out.Text, out.Base64)
	}
}

// completed is b64, or when it is empty text's bytes in base64.
func completed(text, b64 string) string {
	if b64 != "" || text == "" {
		return b64
	}
	var sb strings.Builder
	sb.Grow(base64.StdEncoding.EncodedLen(len(text)))
	WriteBase64(&sb, text)
	return sb.String()
}

// Stats are the register's counters.
type Stats struct {
	// Recorded activities were queued; Dropped were not (queue full by count or bytes):
	// Recorded+Dropped is every activity the connector produced. Written were handed to the
	// sink, Failed handed to it and refused.
	Recorded, Dropped, Written, Failed uint64
	// HeldBytes is the size of the activities queued or in the sink's hands now.
	HeldBytes int64
}

// Pending is how many recorded activities the sink has not taken yet (nor refused): what
// is lost if the process ends now.
func (s Stats) Pending() uint64 { return s.Recorded - s.Written - s.Failed }

// Stats returns the counters so far.
func (r *Register) Stats() Stats {
	// written and failed first: a batch completing meanwhile never makes Pending negative.
	w, f := r.written.Load(), r.failed.Load()
	return Stats{Recorded: r.recorded.Load(), Dropped: r.dropped.Load(), Written: w, Failed: f, HeldBytes: r.held.Load()}
}

// Run hands queued activities to the sink until Close, then flushes what is queued and
// returns. Call it once, on its own goroutine.
func (r *Register) Run() {
	defer close(r.done)
	batch := make([]queued, 0, MaxBatch)
	records := make([]*v1alpha1.ActivityRecord, 0, MaxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case q := <-r.queue:
			r.wakes.Add(1)
			batch, records = r.rounds(timer, append(batch, q), records)
		case <-r.stop:
			for {
				batch = r.fill(batch)
				if len(batch) == 0 {
					return
				}
				batch, records = r.write(batch, records)
			}
		}
	}
}

// rounds writes batch, which holds the activity that woke the register, with what comes
// meanwhile: it lingers, then writes everything queued by now (in batches: a busy register
// lingers once per round, not once per batch), and lingers again while activities keep
// coming. A register busy this way is never parked on its queue, so a conversation's Record
// readies no goroutine: a receiver woken once per batch costs the process a thread woken
// to run it when its other threads are idle, and the handover of the network poller
// between two threads at every batch after that (docs/performance.md §5). A round that
// finds nothing sends the register back to its queue, and so does a first round that
// found only the activity that woke it, with nothing queued since: a connector with no
// activity costs nothing, and one with activities further apart than the linger costs a
// wake and a timer each, as before. Without a linger, one round. It returns both slices
// emptied for reuse.
func (r *Register) rounds(timer *time.Timer, batch []queued, records []*v1alpha1.ActivityRecord) ([]queued, []*v1alpha1.ActivityRecord) {
	for first := true; ; first = false {
		if r.linger > 0 && len(r.queue) < MaxBatch-1 {
			r.wait(timer)
		}
		n := len(batch) + len(r.queue)
		if n == 0 {
			return batch, records
		}
		for more := n; more > 0; more -= MaxBatch {
			batch, records = r.write(r.fill(batch), records)
		}
		if r.linger <= 0 || r.stopping() || first && n == 1 && len(r.queue) == 0 {
			return batch, records
		}
	}
}

// stopping says whether Close has been called.
func (r *Register) stopping() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// wait sleeps for the linger time, or until the register stops. It does not take from the
// queue meanwhile: a receiver parked on the queue would be woken by every activity recorded,
// a thread woken per activity when the process is not busy, and that is most of the cost of
// an activity at a low rate (docs/performance.md §5). Activities wait in the queue, whose
// capacity bounds them as before.
func (r *Register) wait(timer *time.Timer) {
	timer.Reset(r.linger)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-r.stop:
	}
}

// fill takes what is already queued, up to a batch, without waiting.
func (r *Register) fill(batch []queued) []queued {
	for len(batch) < MaxBatch {
		select {
		case q := <-r.queue:
			batch = append(batch, q)
		default:
			return batch
		}
	}
	return batch
}

// write hands batch to the sink, then gives its bytes back to the budget (the sink may hold
// the records until it returns) and returns both slices emptied for reuse.
func (r *Register) write(batch []queued, records []*v1alpha1.ActivityRecord) ([]queued, []*v1alpha1.ActivityRecord) {
	var size int64
	for _, q := range batch {
		if r.seal {
			CompleteBase64(q.a) // the hash covers it
			r.chain.Seal(q.a)
		}
		records = append(records, q.a)
		size += q.size
	}
	err := r.sink.Write(records)
	if err != nil {
		r.failed.Add(uint64(len(records)))
	} else {
		r.written.Add(uint64(len(records)))
	}
	r.held.Add(-size)
	if err != nil && r.onError != nil {
		r.onError(err)
	}
	clear(batch)
	clear(records)
	return batch[:0], records[:0]
}

// Close flushes what is queued to the sink and waits for Run to return, or for ctx. If ctx
// ends first, the error says how many recorded activities the sink had not taken (Pending),
// as the process loses them if it exits then.
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
		return &NotFlushedError{Pending: r.Stats().Pending(), Err: ctx.Err()}
	}
}

// NotFlushedError is Close's error when its context ends before the sink took everything.
type NotFlushedError struct {
	// Pending activities were recorded and not handed to the sink (nor refused by it).
	Pending uint64
	Err     error
}

func (e *NotFlushedError) Error() string {
	return strconv.FormatUint(e.Pending, 10) + " activities not flushed: " + e.Err.Error()
}

func (e *NotFlushedError) Unwrap() error { return e.Err }
