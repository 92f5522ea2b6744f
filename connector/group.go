package connector

import "sync"

// group counts goroutines and signals when they have all returned, without a WaitGroup's
// rule that Add must not race with Wait: once closed, a group takes no new member, and idle
// closes when the last one returns.
type group struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{}
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

// close takes no new member from now on.
func (g *group) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed = true
		if g.n == 0 {
			close(g.idle)
		}
	}
}

// goFunc runs f on a new goroutine of the group; false, and f not run, once it is closed.
func (g *group) goFunc(f func()) bool {
	if !g.add() {
		return false
	}
	go func() {
		defer g.done()
		f()
	}()
	return true
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
