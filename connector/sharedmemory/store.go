// Package sharedmemory holds the shared variables of memory spaces (docs/rules.md §3,
// "Shared variables"): one Store interface and its two stores, in-process (NewMemory, the
// default of `parley run`, where all documents of one run share it) and Redis or Valkey
// (NewRedis). Values are kept as their text form; the connector parses them by the
// variable's type. Keys are parley:<namespace>:<space>:<variable>, so two namespaces of a
// cluster, or two spaces, never see each other's values.
//
// A rule's reads and writes of shared variables are one atomic step (Update): its function
// runs against one snapshot of the variables it reads and its writes are committed only if
// none of them changed meanwhile; otherwise it runs again, a bounded number of times. The
// function must therefore have no effect besides its Txn writes.
package sharedmemory

import (
	"context"
	"errors"
)

// Value is a stored value's text; Set is false when the store holds none.
type Value struct {
	Text string
	Set  bool
}

// Txn is one attempt of an atomic step over a memory space.
type Txn interface {
	// Get reads a variable as of the step's snapshot, or as the step itself set it.
	Get(name string) (Value, error)
	// Set writes a variable when the step commits.
	Set(name, text string)
}

// Entry is a variable's initial value.
type Entry struct {
	Name, Text string
}

// Store holds the shared variables of every memory space of one namespace.
type Store interface {
	// Update runs fn as one atomic step over space; names are the variables fn is known to
	// read, fetched ahead (fn may read others). fn may run several times (see the package
	// comment); an error from fn ends the step without writing. Writes publish a change
	// notification on space in the same step.
	Update(ctx context.Context, space string, names []string, fn func(Txn) error) error
	// View reads variables of space, without a transaction.
	View(ctx context.Context, space string, names []string) ([]Value, error)
	// Init writes initial values: every one with overwrite, else only where none is set.
	Init(ctx context.Context, space string, entries []Entry, overwrite bool) error
	// Subscribe notifies, on the returned subscription's C, that variables of space may
	// have changed. Notifications coalesce; a waiter re-reads what it needs.
	Subscribe(space string) Subscription
	// Close releases the store's connections.
	Close() error
}

// Subscription delivers change notifications until Close.
type Subscription interface {
	C() <-chan struct{}
	Close()
}

// ErrConflict is returned by Update when other writers kept changing the variables for
// every attempt.
var ErrConflict = errors.New("shared memory: too many conflicting writers, step not applied")

// maxAttempts bounds the attempts of one optimistic step.
const maxAttempts = 100

// Key is where a variable of space lives in a store of namespace.
func Key(namespace, space, name string) string {
	return "parley:" + namespace + ":" + space + ":" + name
}

// Channel is where changes of space's variables are announced.
func Channel(namespace, space string) string {
	return "parley:" + namespace + ":" + space
}

// notifier keeps a space's subscribers' coalescing channels.
type subscription struct {
	c     chan struct{}
	close func()
}

func (s *subscription) C() <-chan struct{} { return s.c }
func (s *subscription) Close()             { s.close() }

// signal wakes a subscriber without blocking: one pending notification is enough.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
