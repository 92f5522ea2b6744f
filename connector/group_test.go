package connector

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// goroutineID is the number runtime.Stack gives the calling goroutine ("goroutine N [...").
func goroutineID() uint64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	buf = bytes.TrimPrefix(buf, []byte("goroutine "))
	id, err := strconv.ParseUint(string(buf[:bytes.IndexByte(buf, ' ')]), 10, 64)
	if err != nil {
		panic("goroutineID: " + err.Error())
	}
	return id
}

func newTestGroup(idleTimeout time.Duration) *group {
	g := &group{idleTimeout: idleTimeout}
	g.init()
	return g
}

// counts says how many idle workers g holds, and how many members (idle workers among them).
func (g *group) counts() (idle, members int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.idleWorkers), g.n
}

// goOn runs a task on g that says which goroutine runs it, then waits for release; false if
// g is closed.
func goOn(g *group, ids chan<- uint64, release <-chan struct{}) bool {
	return g.goFunc(func() {
		ids <- goroutineID()
		<-release
	})
}

// closeAndWait closes g and waits (generously) for every goroutine of it to return.
func closeAndWait(t *testing.T, g *group) {
	t.Helper()
	g.close()
	select {
	case <-g.idle:
	case <-time.After(30 * time.Second):
		idle, n := g.counts()
		t.Fatalf("the group's goroutines did not return after close: %d idle workers, %d members", idle, n)
	}
}

// idleTwo runs two tasks at once on g, on two goroutines, then has their goroutines idle
// one after the other, and returns them in that order.
func idleTwo(t *testing.T, g *group, ids chan uint64) (first, last uint64) {
	t.Helper()
	releaseFirst, releaseLast := make(chan struct{}), make(chan struct{})
	goOn(g, ids, releaseFirst)
	first = <-ids
	goOn(g, ids, releaseLast)
	last = <-ids
	if first == last {
		t.Fatalf("two tasks under way on goroutine %d", first)
	}
	close(releaseFirst)
	waitFor(t, "the first goroutine to idle", func() bool { idle, _ := g.counts(); return idle == 1 })
	close(releaseLast)
	waitFor(t, "the last goroutine to idle", func() bool { idle, _ := g.counts(); return idle == 2 })
	return first, last
}

// A goroutine whose task has returned runs the next one, the most recently idled first: its
// stack is the one grown last.
func TestGroupReusesTheLastIdleWorker(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	g := newTestGroup(time.Hour)
	defer closeAndWait(t, g)
	ids := make(chan uint64, 3)
	b, a := idleTwo(t, g, ids) // a idled last

	done := make(chan struct{})
	close(done)
	goOn(g, ids, done)
	if got := <-ids; got != a {
		t.Errorf("the next task ran on goroutine %d, want %d, idled last (b was %d)", got, a, b)
	}
	waitFor(t, "the goroutine to idle again", func() bool { idle, _ := g.counts(); return idle == 2 })
	goOn(g, ids, done)
	if got := <-ids; got != a {
		t.Errorf("the next task ran on goroutine %d, want %d again", got, a)
	}
	if _, n := g.counts(); n != 2 {
		t.Errorf("%d goroutines in the group, want the 2 started", n)
	}
}

// close wakes the idle workers, and idle closes once they and the running tasks have
// returned.
func TestGroupCloseReleasesIdleWorkers(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	g := newTestGroup(time.Hour)
	ids := make(chan uint64, 4)
	quick, slow := make(chan struct{}), make(chan struct{})
	for range 3 {
		goOn(g, ids, quick)
	}
	goOn(g, ids, slow)
	for range 4 {
		<-ids
	}
	close(quick)
	waitFor(t, "three idle workers", func() bool { idle, _ := g.counts(); return idle == 3 })
	if _, n := g.counts(); n != 4 {
		t.Fatalf("%d members, want 4: the running task and the idle workers", n)
	}

	g.close()
	if g.goFunc(func() { t.Error("a task ran after close") }) {
		t.Error("goFunc took a task after close")
	}
	waitFor(t, "the idle workers to return", func() bool { idle, n := g.counts(); return idle == 0 && n == 1 })
	select {
	case <-g.idle:
		t.Fatal("idle closed while a task runs")
	default:
	}
	close(slow)
	closeAndWait(t, g) // a second close changes nothing
}

// An idle worker returns once idle for the idle timeout; the group goes on taking tasks.
func TestGroupIdleWorkerExpires(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	g := newTestGroup(10 * time.Millisecond)
	defer closeAndWait(t, g)
	ids := make(chan uint64, 1)
	done := make(chan struct{})
	close(done)
	goOn(g, ids, done)
	first := <-ids
	waitFor(t, "the idle worker to return", func() bool { idle, n := g.counts(); return idle == 0 && n == 0 })
	select {
	case <-g.idle:
		t.Fatal("idle closed before close")
	default:
	}
	goOn(g, ids, done)
	if got := <-ids; got == first {
		t.Errorf("a task ran on goroutine %d, which should have returned", got)
	}
}

// A sweep retires the idle workers that idled through the whole period it ends, and keeps
// those that became idle during it, for the next. (The sweeps here are called by the test;
// the group's own come an hour apart.)
func TestGroupSweepRetiresWorkersIdleForAWholePeriod(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	g := newTestGroup(time.Hour)
	defer closeAndWait(t, g)
	ids := make(chan uint64, 2)
	// a's rest begins a period: it idles through all of it; b's begins during it.
	a, b := idleTwo(t, g, ids)

	g.sweep()
	waitFor(t, "a to return", func() bool { idle, n := g.counts(); return idle == 1 && n == 1 })
	g.sweep()
	waitFor(t, "b to return", func() bool { idle, n := g.counts(); return idle == 0 && n == 0 })

	// And a worker taken for a task before its period ends is not retired by that sweep.
	done := make(chan struct{})
	close(done)
	goOn(g, ids, done)
	c := <-ids
	if c == a || c == b {
		t.Fatalf("a task ran on goroutine %d, which should have returned", c)
	}
	waitFor(t, "c to idle", func() bool { idle, _ := g.counts(); return idle == 1 })
	goOn(g, ids, done)
	if got := <-ids; got != c {
		t.Fatalf("the task ran on goroutine %d, want the idle worker %d", got, c)
	}
	waitFor(t, "c to idle again", func() bool { idle, _ := g.counts(); return idle == 1 })
	g.sweep() // c idled again during this period
	if idle, n := g.counts(); idle != 1 || n != 1 {
		t.Fatalf("after a sweep: %d idle workers, %d members; want c kept", idle, n)
	}
}

// Beyond maxIdleWorkers idle workers, a goroutine whose task has returned returns too.
func TestGroupBoundsIdleWorkers(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	g := newTestGroup(time.Hour)
	defer closeAndWait(t, g)
	const extra = 5
	ids := make(chan uint64, maxIdleWorkers+extra)
	release := make(chan struct{})
	for range maxIdleWorkers + extra {
		goOn(g, ids, release)
	}
	for range maxIdleWorkers + extra {
		<-ids
	}
	close(release)
	waitFor(t, "the goroutines beyond the bound to return", func() bool {
		idle, n := g.counts()
		return idle == maxIdleWorkers && n == maxIdleWorkers
	})
}

func TestGroupGoFuncAfterClose(t *testing.T) {
	g := newTestGroup(0)
	closeAndWait(t, g)
	if g.goFunc(func() { t.Error("a task ran after close") }) {
		t.Error("goFunc took a task after close")
	}
	ran := false
	g.run(func() { ran = true })
	if ran {
		t.Error("run ran a task after close")
	}
}

// Under the race detector: tasks submitted from many goroutines while idle periods end (a
// timeout short enough that workers expire as they are handed tasks) and while the group
// closes. Every task goFunc takes runs once, and none after it refused one; nothing is left.
func TestGroupStress(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, timeout := range []time.Duration{time.Microsecond, 50 * time.Microsecond, time.Hour} {
		g := newTestGroup(timeout)
		var taken, ran atomic.Int64
		var submitters sync.WaitGroup
		start := make(chan struct{})
		for range 8 {
			submitters.Go(func() {
				<-start
				for i := 0; ; i++ {
					if !g.goFunc(func() { ran.Add(1) }) {
						return
					}
					taken.Add(1)
					if i%16 == 0 {
						runtime.Gosched() // let workers idle, and expire
					}
				}
			})
		}
		close(start)
		waitFor(t, "tasks to run", func() bool { return ran.Load() >= 20000 })
		closeAndWait(t, g)
		submitters.Wait()
		if ran.Load() != taken.Load() {
			t.Errorf("timeout %v: %d tasks taken, %d ran", timeout, taken.Load(), ran.Load())
		}
	}
}

// BenchmarkGroupTask: a task handed to an idle worker and run, then the worker idle again:
// the group's own cost per connection under connect-per-request (docs/performance.md §1).
func BenchmarkGroupTask(b *testing.B) {
	g := newTestGroup(0)
	defer g.close()
	done := make(chan struct{}, 1)
	task := func() { done <- struct{}{} }
	for b.Loop() {
		g.goFunc(task)
		<-done
	}
}
