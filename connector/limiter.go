package connector

import (
	"net/netip"
	"time"
)

// maxLimitedPeers bounds the limiter's memory under a spoofed-source flood.
const maxLimitedPeers = 65536

// peerLimiter is a token bucket per peer IP, used by the one UDP read goroutine only.
type peerLimiter struct {
	rate, burst float64
	buckets     map[netip.Addr]*bucket
	lastSweep   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newPeerLimiter(rate float64, burst int) *peerLimiter {
	return &peerLimiter{rate: rate, burst: float64(max(burst, 1)), buckets: map[netip.Addr]*bucket{}}
}

func (l *peerLimiter) allow(ip netip.Addr, now time.Time) bool {
	if l.rate <= 0 {
		return true
	}
	if now.Sub(l.lastSweep) > 10*time.Second || len(l.buckets) >= maxLimitedPeers {
		l.sweep(now)
	}
	b := l.buckets[ip]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[ip] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep forgets peers whose bucket has refilled: they are as good as new. If a flood of
// distinct addresses still fills the map, it starts over rather than grow.
func (l *peerLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for ip, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, ip)
		}
	}
	if len(l.buckets) >= maxLimitedPeers {
		clear(l.buckets)
	}
}
