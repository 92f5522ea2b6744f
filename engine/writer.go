package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// writeResult is how one queued activity was disposed of.
type writeResult int

const (
	writeCreated writeResult = iota
	// writeDuplicate: the object exists already (a replay).
	writeDuplicate
	// writeQueueFull: dropped at the door, the queue being full.
	writeQueueFull
	// writeFailed: the API server refused it, or kept failing.
	writeFailed
	// writeAbandoned: the engine stopped before writing it; it stays unacknowledged.
	writeAbandoned
)

// writeRetryFor bounds how long one create is retried while it fails for a transient reason
// (the API server restarting, overloaded, unreachable). Meanwhile the queue fills and what
// does not fit is dropped and counted, and a failed activity is acknowledged as dropped:
// past this bound the connector's replay would not fare better than the queue.
const writeRetryFor = 30 * time.Second

// DefaultActivityQueueBytes is the default byte bound of the write queue.
const DefaultActivityQueueBytes = 64 << 20

type writeItem struct {
	act  *v1alpha1.Activity
	done func(writeResult)
	// size is what the item counts against the queue's byte budget until it is disposed of.
	size int64
}

// writer creates Activity objects from a bounded queue, at a bounded rate, with a few
// workers so that API latency does not cap the rate.
type writer struct {
	client client.Client
	queue  chan writeItem
	// held is the size of the items queued or being written; budget bounds it.
	held    atomic.Int64
	budget  int64
	limiter *rate.Limiter
	workers int
	metrics *engineMetrics
	log     logr.Logger
}

func newWriter(c client.Client, opts Options, m *engineMetrics, log logr.Logger) *writer {
	return &writer{
		client:  c,
		queue:   make(chan writeItem, opts.ActivityQueue),
		budget:  opts.ActivityQueueBytes,
		limiter: rate.NewLimiter(rate.Limit(opts.ActivityQPS), opts.ActivityBurst),
		workers: opts.Writers,
		metrics: m,
		log:     log.WithName("writer"),
	}
}

// enqueue never blocks: a queue full by count, or by bytes (unless it holds nothing), drops
// the activity, which is counted.
func (w *writer) enqueue(it writeItem) {
	it.size = int64(it.act.ApproxSize())
	// Counted before it is queued, so that a worker never gives back what was not taken.
	if held := w.held.Add(it.size); held > it.size && held > w.budget {
		w.held.Add(-it.size)
		it.done(writeQueueFull)
		return
	}
	select {
	case w.queue <- it:
		w.metrics.queueLength.Set(float64(len(w.queue)))
		w.metrics.queueBytes.Set(float64(w.held.Load()))
	default:
		w.held.Add(-it.size)
		it.done(writeQueueFull)
	}
}

// dispose reports how an item ended and gives its bytes back to the budget.
func (w *writer) dispose(it writeItem, r writeResult) {
	w.metrics.queueBytes.Set(float64(w.held.Add(-it.size)))
	it.done(r)
}

// run writes until ctx is cancelled; what is still queued then is abandoned.
func (w *writer) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range w.workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case it := <-w.queue:
					w.metrics.queueLength.Set(float64(len(w.queue)))
					w.dispose(it, w.write(ctx, it.act))
				}
			}
		})
	}
	wg.Wait()
	for {
		select {
		case it := <-w.queue:
			w.dispose(it, writeAbandoned)
		default:
			return
		}
	}
}

// write creates one Activity, retrying transient failures with capped backoff; every try
// takes a token.
func (w *writer) write(ctx context.Context, act *v1alpha1.Activity) writeResult {
	backoff, deadline := 100*time.Millisecond, time.Now().Add(writeRetryFor)
	for {
		if err := w.limiter.Wait(ctx); err != nil {
			return writeAbandoned
		}
		start := time.Now()
		err := w.client.Create(ctx, act.DeepCopy())
		w.metrics.writeDuration.Observe(time.Since(start).Seconds())
		switch {
		case err == nil:
			return writeCreated
		case apierrors.IsAlreadyExists(err):
			return writeDuplicate
		case ctx.Err() != nil:
			return writeAbandoned
		case !retriable(err) || time.Now().Add(backoff).After(deadline):
			w.log.Error(err, "could not write an Activity", "namespace", act.Namespace, "name", act.Name)
			return writeFailed
		}
		select {
		case <-ctx.Done():
			return writeAbandoned
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// retriable errors may pass on a later try; the others (invalid, forbidden, the namespace
// being deleted) will not.
func retriable(err error) bool {
	return apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsUnexpectedServerError(err) ||
		!isStatusError(err)
}

func isStatusError(err error) bool {
	_, ok := err.(apierrors.APIStatus)
	return ok
}
