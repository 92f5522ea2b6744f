package connector

import (
	"sync"
	"time"
)

// maxIdleWorkers bounds the goroutines a group keeps waiting for its next task. A goroutine
// that has run a connection's accept and greeting, or its reader, has grown its stack from
// the starting size; Go frees a grown stack when its goroutine returns, so a goroutine per
// task pays the growth (a stack copy, a few microseconds) again for every connection. An
// idle worker keeps its stack for the next task. Idle workers are the spares between tasks
// ending and tasks starting: under steady load the swings are a handful to tens (a
// connection's reader runs until its conversation ends), and beyond the bound the excess
// returns, as every goroutine did before. 128 covers the swings of hundreds of concurrent
// clients and is cheap when a lull leaves them all idle: a g and a few KiB of stack each
// (8 KiB once grown from a 4 KiB start, halved by each GC while it idles, as for any
// goroutine), about a MiB at most, beside the tens of thousands of connections a connector
// holds, and gone after workerIdleTimeout or twice that.
const maxIdleWorkers = 128

// workerIdleTimeout is how long an idle worker waits for a task, at least (and less than
// twice that), before it returns, so that a connector that has gone quiet holds no
// goroutine beyond its connections' own.
const workerIdleTimeout = 10 * time.Second

// group runs goroutines and signals when they have all returned, without a WaitGroup's rule
// that Add must not race with Wait: once closed, a group takes no new member, and idle closes
// when the last one returns.
//
// A goroutine started by goFunc does not return when its task does: it waits as an idle
// worker of the group for the next task, up to maxIdleWorkers of them, each for about
// workerIdleTimeout at most. The most recently idled runs the next task: its stack is the
// one most likely still grown and in cache, and under a lighter load the same few workers
// serve while the others time out and return. An idle worker is a member like a running
// task: close wakes the idle workers, which return, and idle closes once they and the
// running tasks have.
//
// Idle periods end by a sweep of the group's, not a timer per worker: a worker's timer
// moved in the runtime's timer heap at every idle period, that is for every connection,
// and its wait was a select over two channels rather than one receive. The sweep runs every
// idle timeout while any worker idles, and retires those that have idled through the whole
// period it ends: each idles for at least the timeout and less than twice it.
type group struct {
	mu     sync.Mutex
	n      int // members: goroutines started (running a task, or idle workers) and runs under way
	closed bool
	idle   chan struct{}
	// idleWorkers wait for a task, the most recently idled last (so the longest idle first).
	idleWorkers []*worker
	// sweeper runs sweep at the end of each period of the idle timeout, while any worker
	// idles; armed says a period is under way, period numbers it.
	sweeper *time.Timer
	armed   bool
	period  uint64
	// idleTimeout replaces workerIdleTimeout when set, for tests.
	idleTimeout time.Duration
}

// worker is a goroutine of a group, idle between tasks.
type worker struct {
	// tasks hands the worker its next task, or is closed to have it return. Only whoever
	// took the worker from the group's idle workers (goFunc, close, sweep) sends or closes,
	// once, while the worker waits with tasks empty: capacity 1 means the sender never waits
	// for the worker to be scheduled.
	tasks chan func()
	// restedIn is the period in which the worker last became idle, or the one before when
	// its rest began the period (so it idles through all of it); under the group's mu.
	restedIn uint64
}

func (g *group) init() { g.idle = make(chan struct{}) }

// add counts one more member; false once the group is closed.
func (g *group) add() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

func (g *group) done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.closed && g.n == 0 {
		close(g.idle)
	}
}

// close takes no new member from now on, and has the idle workers return.
func (g *group) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return
	}
	g.closed = true
	if g.sweeper != nil {
		g.sweeper.Stop() // a sweep already started finds the group closed
	}
	for i, w := range g.idleWorkers {
		close(w.tasks)
		g.idleWorkers[i] = nil
	}
	g.idleWorkers = nil
	if g.n == 0 {
		close(g.idle)
	}
}

// goFunc runs f on a goroutine of the group, an idle worker if there is one, or a new one;
// false, and f not run, once the group is closed. It does not wait for an idle worker.
func (g *group) goFunc(f func()) bool {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	if k := len(g.idleWorkers) - 1; k >= 0 {
		w := g.idleWorkers[k]
		g.idleWorkers[k] = nil
		g.idleWorkers = g.idleWorkers[:k]
		g.mu.Unlock()
		w.tasks <- f // taken from the idle workers, w is ours to send to: tasks is empty
		return true
	}
	g.n++
	g.mu.Unlock()
	go g.work(&worker{tasks: make(chan func(), 1)}, f)
	return true
}

// work runs f, then the tasks the worker is handed while idle, and returns when it is not
// kept idle (the group closed, or enough idle workers), or when close or a sweep has it
// return (its tasks closed: a nil task).
func (g *group) work(w *worker, f func()) {
	defer g.done()
	for f != nil {
		f()
		f = nil // what the task holds (a connection, its conversation) is not kept while idle
		if !g.rest(w) {
			break
		}
		f = <-w.tasks
	}
}

// rest makes w an idle worker; false when it should return instead: the group is closed, or
// has enough idle workers.
func (g *group) rest(w *worker) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || len(g.idleWorkers) >= maxIdleWorkers {
		return false
	}
	g.idleWorkers = append(g.idleWorkers, w)
	w.restedIn = g.period
	if !g.armed {
		g.beginPeriodLocked()
		w.restedIn = g.period - 1
	}
	return true
}

// beginPeriodLocked has sweep run an idle timeout from now. Called with mu held.
func (g *group) beginPeriodLocked() {
	g.period++
	d := g.idleTimeout
	if d == 0 {
		d = workerIdleTimeout
	}
	if g.sweeper == nil {
		g.sweeper = time.AfterFunc(d, g.sweep)
	} else {
		g.sweeper.Reset(d)
	}
	g.armed = true
}

// sweep ends a period: the idle workers that idled through all of it return, and another
// begins while any worker idles.
func (g *group) sweep() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed = false
	if g.closed {
		return
	}
	k := 0 // the longest idle are first
	for k < len(g.idleWorkers) && g.idleWorkers[k].restedIn < g.period {
		close(g.idleWorkers[k].tasks) // taken from the idle workers: ours to close
		k++
	}
	n := copy(g.idleWorkers, g.idleWorkers[k:])
	clear(g.idleWorkers[n:])
	g.idleWorkers = g.idleWorkers[:n]
	if n > 0 {
		g.beginPeriodLocked()
	}
}

// run runs f as a member of the group (a timer callback, on the timer's goroutine), unless
// the group is closed.
func (g *group) run(f func()) {
	if !g.add() {
		return
	}
	defer g.done()
	f()
}
