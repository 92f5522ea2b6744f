package connector

import "sync"

// An idle TCP connection holds no read buffer: its read loop borrows one when the socket is
// readable, for one read and the input it makes, and gives it back (readiness_linux.go,
// docs/performance.md §5). Only plain TCP connections wait this way: TLS reads records of
// its own, and a conversation with CEL expressions keeps the input's bytes (raw) after it.

// readBuffers holds the buffers read loops lend out.
var readBuffers sync.Pool

// borrowReadBuffer returns a buffer of size bytes.
func borrowReadBuffer(size int) *[]byte {
	if b, ok := readBuffers.Get().(*[]byte); ok && cap(*b) >= size {
		*b = (*b)[:size]
		return b
	}
	b := make([]byte, size)
	return &b
}
