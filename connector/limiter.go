package connector

import (
	"container/list"
	"net/netip"
	"time"
)

// maxLimitedPeers bounds the limiter's memory under a spoofed-source flood.
const maxLimitedPeers = 65536

// peerLimiter is a token bucket per source (an IPv4 address or an IPv6 prefix: sourceOf),
// used by the one UDP read goroutine only. Its buckets are kept in least-recently-used
// order: when a flood of new sources fills it, the source not heard from for longest is
// forgotten, one at a time. A source that keeps sending stays at the front, its bucket
// empty: no flood of other sources ever resets it to a full burst.
type peerLimiter struct {
	rate, burst float64
	prefixV6    int
	max         int
	buckets     map[netip.Prefix]*list.Element
	lru         list.List // of *bucket, most recent first
}

type bucket struct {
	source netip.Prefix
	tokens float64
	last   time.Time
}

func newPeerLimiter(rate float64, burst, prefixV6 int) *peerLimiter {
	return &peerLimiter{rate: rate, burst: float64(max(burst, 1)), prefixV6: prefixV6, max: maxLimitedPeers,
		buckets: map[netip.Prefix]*list.Element{}}
}

func (l *peerLimiter) allow(ip netip.Addr, now time.Time) bool {
	if l.rate <= 0 {
		return true
	}
	src := sourceOf(ip, l.prefixV6)
	var b *bucket
	if e := l.buckets[src]; e != nil {
		l.lru.MoveToFront(e)
		b = e.Value.(*bucket)
		b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
		b.last = now
	} else {
		if len(l.buckets) >= l.max {
			// The least recently heard source goes; its element is reused for the new one.
			e := l.lru.Back()
			old := e.Value.(*bucket)
			delete(l.buckets, old.source)
			*old = bucket{source: src, tokens: l.burst, last: now}
			l.lru.MoveToFront(e)
			l.buckets[src] = e
			b = old
		} else {
			b = &bucket{source: src, tokens: l.burst, last: now}
			l.buckets[src] = l.lru.PushFront(b)
		}
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
