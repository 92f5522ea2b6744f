package connector

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// datagramQueue holds one DTLS source's datagrams, from the listener's read goroutine
// (dtlsDemux) to the DTLS library's reads of that source's connection, bounded in bytes.
// Each datagram is queued as a copy of its own and let go once read, so a queue with
// nothing queued holds no buffer: a handshake waiting for its cookie (every one of a flood
// of spoofed hellos) has read its one ClientHello, and a ring buffer would keep 2 KiB or
// more for each of them.
type datagramQueue struct {
	mu     sync.Mutex
	queued [][]byte // oldest first
	// size is what the queued datagrams count against limit (datagramCost each).
	size, limit int
	closed      bool
	deadline    time.Time // of reads; zero for none
	// wake is made by a reader that waits, and closed (and forgotten) at the next change
	// it must see: a datagram queued, the queue closed, the deadline moved.
	wake chan struct{}
}

// errQueueFull says a datagram was dropped because its source's queue was at its limit.
var errQueueFull = errors.New("DTLS source's datagram queue full")

// datagramCost is what a datagram counts against its queue's limit: its bytes and what
// holding it costs beside them (its slice in the queue, its allocation's rounding), so that a
// flood of tiny datagrams is bounded as well as one of large ones.
func datagramCost(b []byte) int { return len(b) + 32 }

func newDatagramQueue(limit int) *datagramQueue { return &datagramQueue{limit: limit} }

// write queues a copy of b; errQueueFull if it does not fit, net.ErrClosed once closed.
func (q *datagramQueue) write(b []byte) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return net.ErrClosed
	case q.size+datagramCost(b) > q.limit:
		return errQueueFull
	}
	q.queued = append(q.queued, append([]byte(nil), b...))
	q.size += datagramCost(b)
	q.wakeReaders()
	return nil
}

// read takes the oldest datagram into p, waiting for one until the read deadline. A
// datagram longer than p is cut, with io.ErrShortBuffer; a closed queue reads io.EOF; a
// read past the deadline fails with os.ErrDeadlineExceeded (a net.Error that times out).
func (q *datagramQueue) read(p []byte) (int, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		q.mu.Lock()
		if !q.deadline.IsZero() && !time.Now().Before(q.deadline) {
			q.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		}
		if len(q.queued) > 0 {
			d := q.queued[0]
			q.queued[0] = nil
			q.queued = q.queued[1:]
			if len(q.queued) == 0 {
				q.queued = nil // no backing array kept while nothing is queued
			}
			q.size -= datagramCost(d)
			q.mu.Unlock()
			if n := copy(p, d); n < len(d) {
				return n, io.ErrShortBuffer
			}
			return len(d), nil
		}
		if q.closed {
			q.mu.Unlock()
			return 0, io.EOF
		}
		if q.wake == nil {
			q.wake = make(chan struct{})
		}
		wake, deadline := q.wake, q.deadline
		q.mu.Unlock()
		var expired <-chan time.Time
		if !deadline.IsZero() {
			if timer == nil {
				timer = time.NewTimer(time.Until(deadline))
			} else {
				timer.Reset(time.Until(deadline))
			}
			expired = timer.C
		}
		select {
		case <-wake:
		case <-expired:
		}
	}
}

// setReadDeadline sets when reads give up; the zero time, never.
func (q *datagramQueue) setReadDeadline(t time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.deadline = t
	q.wakeReaders()
}

// setLimit changes the bytes the queue may hold from now on.
func (q *datagramQueue) setLimit(limit int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.limit = limit
}

// close drops what is queued (its connection is closing or being given up) and makes
// reads return io.EOF and writes fail.
func (q *datagramQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.queued, q.size = nil, 0
	q.wakeReaders()
}

// queuedSize is what the queued datagrams count against the limit.
func (q *datagramQueue) queuedSize() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.size
}

// wakeReaders wakes the readers waiting, to look at the queue again. Called with mu held.
func (q *datagramQueue) wakeReaders() {
	if q.wake != nil {
		close(q.wake)
		q.wake = nil
	}
}
