package connector

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
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
	fits := dtlsUnverifiedBuffer / datagramCost(hello(size))
	waitFor(t, "the datagrams over the buffer to be dropped", func() bool { return len(drops.of(refusedBufferFull)) == 40-fits })
	if n := s.queue.queuedSize(); n > dtlsUnverifiedBuffer {
		t.Errorf("%d bytes buffered before the cookie", n)
	}

	if !d.verify(s) {
		t.Fatal("not verified")
	}
	send(400)
	fits = dtlsPeerBuffer / datagramCost(hello(size))
	waitFor(t, "the datagrams over the buffer to be dropped", func() bool { return len(drops.of(refusedBufferFull)) == 440-fits })
	if n := s.queue.queuedSize(); n > dtlsPeerBuffer {
		t.Errorf("%d bytes buffered after the cookie", n)
	}
	// Reading makes room again.
	buf := make([]byte, 2*size)
	if n, _, err := s.ReadFrom(buf); err != nil || n != size {
		t.Fatalf("read %d, %v", n, err)
	}
	before := len(drops.of(refusedBufferFull))
	send(1)
	waitFor(t, "the datagram to be buffered", func() bool { return s.queue.queuedSize() > (fits-1)*datagramCost(hello(size)) })
	if after := len(drops.of(refusedBufferFull)); after != before {
		t.Errorf("%d more drops with room in the buffer", after-before)
	}
}

// A source's queue holds its datagrams as copies of their own and lets them go once read:
// a handshake waiting for its cookie, having read its one ClientHello, holds no buffer.
func TestDTLSQueueHoldsNothingOnceRead(t *testing.T) {
	q := newDatagramQueue(dtlsUnverifiedBuffer)
	b := hello(200)
	if err := q.write(b); err != nil {
		t.Fatal(err)
	}
	b[1] = 0xff // the queue has its own copy
	got := make([]byte, dtlsReadSize)
	n, err := q.read(got)
	if err != nil || n != 200 || got[1] != 0 {
		t.Fatalf("read %d (byte 1: %#x), %v", n, got[1], err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.queued != nil || q.size != 0 {
		t.Errorf("holds %d datagrams (capacity %d), %d bytes once read", len(q.queued), cap(q.queued), q.size)
	}
}

// A datagram longer than the read's buffer is cut and said to be, not kept for a later read.
func TestDTLSQueueShortRead(t *testing.T) {
	q := newDatagramQueue(dtlsUnverifiedBuffer)
	if err := q.write(hello(100)); err != nil {
		t.Fatal(err)
	}
	if n, err := q.read(make([]byte, 50)); n != 50 || !errors.Is(err, io.ErrShortBuffer) {
		t.Fatalf("read %d, %v; want 50, %v", n, err, io.ErrShortBuffer)
	}
	if n := q.queuedSize(); n != 0 {
		t.Errorf("%d bytes still queued", n)
	}
}

// waiting says whether a reader waits on q.
func waiting(q *datagramQueue) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.wake != nil
}

// A read waiting for a datagram returns when the deadline moves to the past (as the DTLS
// library's reads are cut when their handshake is given up), at a deadline to come, and
// when the queue closes; closing drops what is queued and refuses what comes after.
func TestDTLSQueueWaitingReadEnds(t *testing.T) {
	q := newDatagramQueue(dtlsUnverifiedBuffer)
	read := func() <-chan error {
		done := make(chan error, 1)
		go func() {
			_, err := q.read(make([]byte, dtlsReadSize))
			done <- err
		}()
		return done
	}
	timedOut := func(err error) bool {
		var ne net.Error
		return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &ne) && ne.Timeout()
	}

	done := read()
	waitFor(t, "the read to wait", func() bool { return waiting(q) })
	q.setReadDeadline(time.Unix(1, 0))
	if err := <-done; !timedOut(err) {
		t.Fatalf("read past the deadline: %v", err)
	}

	q.setReadDeadline(time.Now().Add(20 * time.Millisecond))
	if err := <-read(); !timedOut(err) {
		t.Fatalf("read until the deadline: %v", err)
	}

	q.setReadDeadline(time.Time{})
	done = read()
	waitFor(t, "the read to wait", func() bool { return waiting(q) })
	if err := q.write(hello(64)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("read a datagram: %v", err)
	}

	done = read()
	waitFor(t, "the read to wait", func() bool { return waiting(q) })
	q.close()
	if err := <-done; !errors.Is(err, io.EOF) {
		t.Fatalf("read of a closed queue: %v", err)
	}

	q = newDatagramQueue(dtlsUnverifiedBuffer)
	if err := q.write(hello(64)); err != nil {
		t.Fatal(err)
	}
	q.close()
	if n := q.queuedSize(); n != 0 {
		t.Errorf("%d bytes queued after close", n)
	}
	if err := q.write(hello(64)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}
