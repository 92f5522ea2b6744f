package uplink

import (
	"math/rand/v2"
	"time"
)

// Backoff spaces redials: capped exponential growth with full jitter, so that the connector
// pods of a cluster whose engine restarted do not all dial it in the same instant.
type Backoff struct {
	// Base is the ceiling of the first delay, doubled at every attempt up to Max.
	Base, Max time.Duration
}

// DefaultBackoff goes from 250ms to a 5s ceiling in six attempts. The ceiling bounds how
// long pods take to find a new engine leader once it serves: the old one may have been gone
// for a whole lease (15s) by then, and a longer ceiling would add up to as much again. A
// refused dial costs the engine nothing, so redialing every few seconds is cheap.
var DefaultBackoff = Backoff{Base: 250 * time.Millisecond, Max: 5 * time.Second}

// Ceiling is the longest delay of attempt (0 for the first redial): Base·2^attempt, at most Max.
func (b Backoff) Ceiling(attempt int) time.Duration {
	if b.Base <= 0 {
		return 0
	}
	d := b.Base
	for range max(attempt, 0) {
		if d >= b.Max/2 {
			return b.Max
		}
		d *= 2
	}
	return min(d, b.Max)
}

// Delay is a uniformly random duration in [0, Ceiling(attempt)].
func (b Backoff) Delay(attempt int) time.Duration {
	c := b.Ceiling(attempt)
	if c <= 0 {
		return 0
	}
	return rand.N(c + 1)
}
