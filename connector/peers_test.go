package connector

import (
	"net/netip"
	"testing"
	"time"
)

// Loopback has one IPv6 address, so no socket test can come from two addresses of one /64:
// the grouping is checked here, and the cap itself over real IPv4 sockets in hostile_test.go.
func TestSourceGroupsIPv6ByPrefix(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		prefix int
		want   string
	}{
		{"192.0.2.7", 64, "192.0.2.7/32"},
		{"::ffff:192.0.2.7", 64, "192.0.2.7/32"},
		{"2001:db8:1:2:aaaa::1", 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::9", 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::9", 48, "2001:db8:1::/48"},
		{"2001:db8:1:2:ffff::9", 128, "2001:db8:1:2:ffff::9/128"},
	} {
		if got := sourceOf(netip.MustParseAddr(tc.addr), tc.prefix).String(); got != tc.want {
			t.Errorf("sourceOf(%s, /%d) = %s, want %s", tc.addr, tc.prefix, got, tc.want)
		}
	}
}

// A flood of new sources evicts the least recently heard one at a time: the heaviest sender,
// heard all along, keeps its empty bucket (the old limiter cleared every bucket when full,
// handing the flooder a fresh burst). Addresses of one IPv6 /64 share a bucket.
func TestLimiterEvictsFairlyAndGroupsIPv6(t *testing.T) {
	l := newPeerLimiter(1, 2, 64)
	l.max = 4
	now := time.Unix(1000, 0)
	heavy := netip.MustParseAddr("192.0.2.1")
	for range 2 {
		if !l.allow(heavy, now) {
			t.Fatal("the burst is refused")
		}
	}
	for i := range 1000 {
		spoofed := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		l.allow(spoofed, now)
		if l.allow(heavy, now) {
			t.Fatalf("after %d new sources, the heavy sender's bucket was reset", i+1)
		}
	}
	if len(l.buckets) != 4 || l.lru.Len() != 4 {
		t.Fatalf("%d buckets, %d in the list: over the bound 4", len(l.buckets), l.lru.Len())
	}
	v6 := newPeerLimiter(1, 2, 64)
	a, b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff:2")
	if !v6.allow(a, now) || !v6.allow(b, now) || v6.allow(a, now) {
		t.Fatal("two addresses of one /64 did not share their bucket of 2")
	}
	if !v6.allow(netip.MustParseAddr("2001:db8:0:1::1"), now) {
		t.Fatal("another /64 was refused")
	}
}
