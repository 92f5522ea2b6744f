package connector

// OverflowedSocket is a UDP socket whose receive buffer overflowed, with the kernel's drop
// count (overflowedSocket).
var OverflowedSocket = overflowedSocket

// IdleWaiter says whether c's idle waiter has started (with the first connection it held)
// and how many connections it holds now.
func IdleWaiter(c *Connector) (started bool, parked int) {
	c.idle.mu.Lock()
	defer c.idle.mu.Unlock()
	return c.idle.ep != nil, len(c.idle.parked)
}
