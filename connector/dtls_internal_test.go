package connector

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// The DTLS listener's demultiplexer on a real UDP socket on loopback, without the DTLS
// library above it: what it keeps for sources before and after their cookie, and what it
// drops and counts.

// demuxDrops records what a demultiplexer reports dropped.
type demuxDrops struct {
	mu    sync.Mutex
	peers map[refusalReason][]netip.AddrPort
}

func (d *demuxDrops) drop(r refusalReason, p netip.AddrPort) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.peers[r] = append(d.peers[r], p)
}

func (d *demuxDrops) of(r refusalReason) []netip.AddrPort {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]netip.AddrPort(nil), d.peers[r]...)
}

func startDemux(t *testing.T) (*dtlsDemux, *demuxDrops) {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	drops := &demuxDrops{peers: map[refusalReason][]netip.AddrPort{}}
	d := newDTLSDemux(pc, drops.drop, func(uint64) {})
	t.Cleanup(func() {
		_ = d.Close()
		d.mu.Lock()
		var left []*helloSocket
		for _, s := range d.socks {
			left = append(left, s)
		}
		d.mu.Unlock()
		for _, s := range left {
			_ = s.Close()
		}
		<-d.readDone // the UDP socket closed with the last of them
	})
	return d, drops
}

// hello is a datagram that opens with a DTLS ClientHello record header, padded to size.
func hello(size int) []byte {
	b := make([]byte, size)
	b[0], b[13] = 22, 1
	return b
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// With more new sources than the backlog holds and nobody accepting, the oldest are dropped
// for the newest and reported each: the backlog holds the newest dtlsBacklog sources.
func TestDTLSBacklogDropsTheOldestSource(t *testing.T) {
	d, drops := startDemux(t)
	to := d.pc.LocalAddr().(*net.UDPAddr)
	const sources = dtlsBacklog + 10
	var sent []netip.AddrPort
	for i := range sources {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 4, 0, byte(i))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.WriteToUDP(hello(64), to); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, c.LocalAddr().(*net.UDPAddr).AddrPort())
		_ = c.Close()
		// One at a time, so that the kernel's buffer drops none and the order is known.
		waitFor(t, "the hello to be dispatched", func() bool {
			d.mu.Lock()
			defer d.mu.Unlock()
			return d.socks[sent[i]] != nil
		})
	}
	dropped := drops.of(refusedBacklog)
	if len(dropped) != 10 {
		t.Fatalf("%d sources dropped, want 10", len(dropped))
	}
	for i, p := range dropped {
		if p != sent[i] {
			t.Errorf("dropped #%d is %v, want the oldest, %v", i, p, sent[i])
		}
	}
	for i := 10; i < sources; i++ {
		s, _, err := d.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got := s.(*helloSocket).peer; got != sent[i] {
			t.Fatalf("accepted %v, want %v", got, sent[i])
		}
		_ = s.Close()
	}
}

// A source's unread datagrams are bounded in bytes: dtlsUnverifiedBuffer before its cookie
// came back, dtlsPeerBuffer after; beyond, each datagram is dropped and reported.
func TestDTLSSourceBufferIsBounded(t *testing.T) {
	d, drops := startDemux(t)
	to := d.pc.LocalAddr().(*net.UDPAddr)
	c, err := net.DialUDP("udp4", nil, to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const size = 1000
	send := func(n int) {
		for range n {
			if _, err := c.Write(hello(size)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Microsecond) // not faster than the reader: the kernel drops none
		}
	}
	send(40)
	ps, _, err := d.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s := ps.(*helloSocket)
	defer s.Close()
	fits := dtlsUnverifiedBuffer / (size + 2) // a packet costs 2 bytes of length beside it
	waitFor(t, "the datagrams over the buffer to be dropped", func() bool { return len(drops.of(refusedBufferFull)) == 40-fits })
	if n := s.buf.Size(); n > dtlsUnverifiedBuffer {
		t.Errorf("%d bytes buffered before the cookie", n)
	}

	if !d.verify(s) {
		t.Fatal("not verified")
	}
	send(400)
	fits = dtlsPeerBuffer / (size + 2)
	waitFor(t, "the datagrams over the buffer to be dropped", func() bool { return len(drops.of(refusedBufferFull)) == 440-fits })
	if n := s.buf.Size(); n > dtlsPeerBuffer {
		t.Errorf("%d bytes buffered after the cookie", n)
	}
	// Reading makes room again.
	buf := make([]byte, 2*size)
	if n, _, err := s.ReadFrom(buf); err != nil || n != size {
		t.Fatalf("read %d, %v", n, err)
	}
	before := len(drops.of(refusedBufferFull))
	send(1)
	waitFor(t, "the datagram to be buffered", func() bool { return s.buf.Size() > (fits-1)*(size+2) })
	if after := len(drops.of(refusedBufferFull)); after != before {
		t.Errorf("%d more drops with room in the buffer", after-before)
	}
}
