package connector

import "time"

// SetRetryWait replaces the pause before a retry after a temporary accept or read error,
// for tests to see the pauses without waiting them out. Call it before serving.
func SetRetryWait(c *Connector, wait func(time.Duration)) {
	c.retryWait = func(d time.Duration, _ <-chan struct{}) { wait(d) }
}
