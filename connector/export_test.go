package connector

import (
	"net/netip"
	"time"
)

// SetRetryWait replaces the pause before a retry after a temporary accept or read error,
// for tests to see the pauses without waiting them out. Call it before serving.
func SetRetryWait(c *Connector, wait func(time.Duration)) {
	c.retryWait = func(d time.Duration, _ <-chan struct{}) { wait(d) }
}

// SetAmplificationSlot sets the clock of the UDP amplification windows to slot (in units
// of AmplificationWindow/10 since the connector began; at least 1), so that a test slides
// the windows without waiting them out. Call it before the first datagram.
func SetAmplificationSlot(c *Connector, slot int64) {
	if slot < 1 {
		panic("SetAmplificationSlot: slot 0 is the real clock")
	}
	c.ampSlotForTests.Store(slot)
}

// HoldConversation holds the live conversation keyed by peer (identifyBy: Address) busy, as
// a step under way does (an async rule waiting on a slow shared-memory store), until the
// returned func is called.
func HoldConversation(c *Connector, peer netip.AddrPort) (release func()) {
	cv := c.conns.lookup(addrKey(peer))
	if cv == nil {
		panic("HoldConversation: no live conversation of " + peer.String())
	}
	cv.mu.Lock()
	return cv.mu.Unlock
}

// MaxIdleWorkers bounds the goroutines a connector keeps between tasks (group.go).
const MaxIdleWorkers = maxIdleWorkers

// IdleWorkers is how many of c's goroutines wait for their next task (group.go).
func IdleWorkers(c *Connector) int {
	c.tasks.mu.Lock()
	defer c.tasks.mu.Unlock()
	return len(c.tasks.idleWorkers)
}
