package connector_test

import (
	"crypto/rand"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/connector/connectortest"
)

// Hostile peers (docs/hardening.md): every resource a peer can make the connector hold is
// bounded, and what is refused is counted.

// stalledSink is an activity writer that blocks until released, as a file on a full disk or
// a terminal nobody reads: it keeps what it was handed, to count it after.
type stalledSink struct {
	release chan struct{}
	mu      sync.Mutex
	got     []*v1alpha1.ActivityRecord
}

func newStalledSink() *stalledSink { return &stalledSink{release: make(chan struct{})} }

func (s *stalledSink) Write(batch []*v1alpha1.ActivityRecord) error {
	<-s.release
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range batch {
		// Only what the count needs: keeping the records would hold their bytes in the test.
		s.got = append(s.got, &v1alpha1.ActivityRecord{Type: a.Type, Message: a.Message, Evidence: a.Evidence})
	}
	return nil
}

func (s *stalledSink) records() []*v1alpha1.ActivityRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*v1alpha1.ActivityRecord(nil), s.got...)
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// One peer streams 64 MiB at maxInputSize 1 MiB while the activity writer is stalled: the
// register holds at most its byte budget (plus one activity), drops the rest and counts
// every drop, and the ConnectorStopped record says how many.
func TestStreamWithStalledWriterStaysWithinByteBudget(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const (
		budget = 8 << 20
		stream = 64 << 20
		// margin: one activity over the budget (text and base64 of 1 MiB), the connection's
		// 1 MiB read buffer, the peer's 1 MiB write buffer, the runtime's own.
		margin = 8 << 20
	)
	sink := newStalledSink()
	reg := activity.NewRegister(sink, 0, nil)
	reg.SetBudget(budget)
	regDone := make(chan struct{})
	go func() { reg.Run(); close(regDone) }()
	c := newConnector(t, "stream", `operation: {port: 1, maxInputSize: 1048576, interactionTimeout: 1m}`, reg)
	s := serveTCP(t, c, nil)
	before := heapInUse()

	conn, err := net.Dial("tcp4", c.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	_, _ = rand.Read(chunk)
	for range stream / len(chunk) {
		if _, err := conn.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.Close()
	chunk = nil
	// The conversation has ended once the connector has read all of it and seen the close.
	eventually(t, "the conversation to end", func() bool { return c.Stats().Total == 1 && c.Active() == 0 })

	after := heapInUse()
	st := reg.Stats()
	t.Logf("heap grew %d KiB; register holds %d KiB, recorded %d, dropped %d", (int64(after)-int64(before))>>10, st.HeldBytes>>10, st.Recorded, st.Dropped)
	if after > before && after-before > budget+margin {
		t.Errorf("heap grew by %d bytes: over the budget %d + margin %d", after-before, budget, margin)
	}
	if st.HeldBytes > budget+(3<<20) {
		t.Errorf("register holds %d bytes, budget %d", st.HeldBytes, budget)
	}
	if st.Dropped == 0 {
		t.Fatal("nothing dropped: the stream did not reach the budget")
	}

	close(sink.release)
	eventually(t, "the register to drain", func() bool { return reg.Stats().Pending() == 0 })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.result(t); err == nil {
		t.Fatal("Serve returned nil after Close")
	}
	if err := reg.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	<-regDone

	got := sink.records()
	st = reg.Stats()
	last := got[len(got)-1]
	if last.Type != v1alpha1.ActivityConnectorStopped {
		t.Fatalf("last activity written is %s, want ConnectorStopped", last.Type)
	}
	// Every activity produced has a sequence number; the last one written is the last
	// produced. So produced - written are the drops, and the register counted exactly those.
	produced := last.Evidence.Seq
	if st.Written != uint64(len(got)) || st.Recorded+st.Dropped != produced || produced-uint64(len(got)) != st.Dropped {
		t.Errorf("produced %d, written %d (register says %d), dropped %d: the counts do not add up", produced, len(got), st.Written, st.Dropped)
	}
	if want := strconv.FormatUint(st.Dropped, 10) + " activities dropped"; !strings.Contains(last.Message, want) {
		t.Errorf("ConnectorStopped says %q, want it to say %q", last.Message, want)
	}
}

// dialFrom opens a raw TCP connection to addr from the loopback address src (Linux accepts
// any of 127.0.0.0/8 as a source on loopback): a peer of its own for the per-source caps.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: wait}
	conn, err := d.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func rejections(acts []*v1alpha1.ActivityRecord, reason string) int {
	n := 0
	for _, a := range acts {
		if a.Type == v1alpha1.ActivityRejected && strings.Contains(a.Message, reason) {
			n++
		}
	}
	return n
}

const hostileTLSRules = `
operation: {port: 1, tls: {enabled: true}, maxConcurrentConnections: %d%s}
conversation:
  greetings: {value: "+OK secure\n"}
`

// One source opening stalled TLS handshakes (raw connects that never send a ClientHello)
// gets maxConnectionsPerPeer of them, refused before any handshake beyond; a real client
// from another source is served meanwhile.
func TestStalledHandshakesOfOneSourceAreCappedPerPeer(t *testing.T) {
	ca := newCA(t, "parley-test")
	cert := ca.issue("server", false, false).pair(t)
	h := start(t, fmt.Sprintf(hostileTLSRules, 20, ", maxConnectionsPerPeer: 2"), func(o *connector.Options) {
		o.TLS = &connector.TLS{Certificate: &cert, HandshakeTimeout: time.Hour}
	})
	for range 10 {
		dialFrom(t, "127.0.0.2", h.Addr())
	}
	eventually(t, "8 refusals", func() bool { return h.Connector.Stats().Rejected == 8 })
	if n := rejections(h.Activities.WaitFor(t, v1alpha1.ActivityRejected, 8), "maxConnectionsPerPeer (2 sockets of 127.0.0.2/32)"); n != 8 {
		t.Errorf("%d refusals name the per-peer cap:\n%s", n, h.Activities.Dump())
	}
	c := runOpenSSL(t, "s_client", "-connect", h.Addr(), "-CAfile", ca.File, "-quiet")
	c.waitOutput("+OK secure")
	if h.Connector.Stats().Rejected != 8 {
		t.Errorf("rejected %d, want 8", h.Connector.Stats().Rejected)
	}
}

// Handshakes under way count against maxConcurrentConnections, so stalled handshakes cannot
// take more than the cap; they end at the handshake timeout, and a real client is served.
func TestStalledHandshakesCountAgainstTheCapAndTimeOut(t *testing.T) {
	ca := newCA(t, "parley-test")
	cert := ca.issue("server", false, false).pair(t)
	h := start(t, fmt.Sprintf(hostileTLSRules, 3, ""), func(o *connector.Options) {
		// Long enough that the first handshakes are still under way when the fourth dial is
		// accepted, on a loaded machine too.
		o.TLS = &connector.TLS{Certificate: &cert, HandshakeTimeout: 6 * time.Second}
	})
	// Accepted in this order by the one accept loop: three handshakes fill the cap, the
	// fourth is refused at once.
	for _, src := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		dialFrom(t, src, h.Addr())
	}
	h.Activities.WaitFor(t, v1alpha1.ActivityRejected, 1)
	if n := rejections(h.Activities.All(), "handshakes under way included"); n != 1 {
		t.Fatalf("%d refusals for the cap, want 1:\n%s", n, h.Activities.Dump())
	}
	errs := h.Activities.WaitFor(t, v1alpha1.ActivityError, 3)
	for _, e := range errs {
		if !strings.Contains(e.Message, "TLS handshake") {
			t.Errorf("error %q", e.Message)
		}
	}
	c := runOpenSSL(t, "s_client", "-connect", h.Addr(), "-CAfile", ca.File, "-quiet")
	c.waitOutput("+OK secure")
}

// UDP conversations are capped per source too: a third source port of 127.0.0.2 is refused,
// another address is not.
func TestUDPConversationsCappedPerPeer(t *testing.T) {
	h := start(t, `
operation: {port: 1, transport: UDP, maxConcurrentConnections: 20, maxConnectionsPerPeer: 2, interactionTimeout: 1m}
conversation: {default: {value: "ok\n"}}
`)
	send := func(src string) {
		t.Helper()
		pc, err := net.ListenPacket("udp4", src+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		to, _ := net.ResolveUDPAddr("udp4", h.Addr())
		if _, err := pc.WriteTo([]byte("hi\n"), to); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		send("127.0.0.2")
	}
	send("127.0.0.3")
	eventually(t, "3 conversations and 1 refusal", func() bool {
		st := h.Connector.Stats()
		return st.Total == 3 && st.Rejected == 1
	})
	if err := h.Stop(); err != nil { // a datagram's refusal is summarised, at the latest as the connector stops
		t.Fatal(err)
	}
	if n := rejections(h.Activities.Of(v1alpha1.ActivityRejected), "1 datagram from 1 source refused since the last summary (at most every 10s): over maxConnectionsPerPeer (2 per source)"); n != 1 {
		t.Errorf("refusal does not name the per-peer cap:\n%s", h.Activities.Dump())
	}
}

// trickle sends one byte every step until the server closes the connection, and returns how
// many it sent; a server that never closes fails the test after wait.
func trickle(t *testing.T, addr string, step time.Duration) int {
	t.Helper()
	conn := dialFrom(t, "127.0.0.1", addr)
	sent := 0
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if _, err := conn.Write([]byte("a")); err != nil {
			return sent
		}
		sent++
		_ = conn.SetReadDeadline(time.Now().Add(step))
		if _, err := conn.Read(make([]byte, 64)); err != nil && !isTimeout(err) {
			return sent // closed by the server
		}
	}
	t.Fatalf("still open after %v of one byte every %v", wait, step)
	return sent
}

// A peer sending one byte every short interval keeps interactionTimeout from expiring; the
// maximum conversation age ends it anyway.
func TestSlowPeerIsClosedAtMaxConversationAge(t *testing.T) {
	h := start(t, `
operation: {port: 1, interactionTimeout: 1h, maxConversationAge: 300ms}
conversation: {timeout: {value: "bye\n"}}
`)
	trickle(t, h.Addr(), 20*time.Millisecond)
	to := h.Activities.WaitFor(t, v1alpha1.ActivityTimedOut, 1)[0]
	if !strings.Contains(to.Message, "maxConversationAge 300ms") || to.Rules == nil || to.Rules.Basic != v1alpha1.BasicTimeout {
		t.Errorf("TimedOut %q, rules %+v", to.Message, to.Rules)
	}
}

// 5,000 spoofed DTLS ClientHellos from as many 127.x sources (loopback accepts any source
// of 127.0.0.0/8; spoofing proper needs raw sockets): bounded memory, no Error activity,
// every refusal and every handshake given up for its cookie counted and summarised, and a
// real client served once they are gone.
func TestSpoofedDTLSHellosCostBoundedStateAndNoActivityEach(t *testing.T) {
	ca := newCA(t, "parley-test")
	cert := ca.issue("server", false, false).pair(t)
	h := start(t, `
operation: {port: 1, transport: UDP, tls: {enabled: true}, maxConcurrentConnections: 1000}
conversation:
  greetings: {value: "+OK secure\n"}
  rules: [{id: 1, mode: Sync, regex: "PING", response: "+PONG\n"}]
`, func(o *connector.Options) {
		o.TLS = &connector.TLS{Certificate: &cert, HandshakeTimeout: time.Hour} // only the cookie deadline cuts them
		o.RefusalSummaryInterval = time.Hour                                    // the summaries come as it stops
	})
	addr := h.Connector.Addr().(*net.UDPAddr)
	before := heapInUse()
	const hellos = 5000
	for i := range hellos {
		sendFrom(t, net.IPv4(127, 2, byte(i>>8), byte(i)), addr, connectortest.DTLSClientHello(), 1)
	}
	grown := int64(heapInUse()) - int64(before)
	t.Logf("heap after %d spoofed hellos: %+d KiB", hellos, grown>>10)
	if grown > 60<<20 {
		t.Errorf("the heap grew by %d MiB for %d spoofed hellos", grown>>20, hellos)
	}
	eventually(t, "the unverified handshakes to be given up", func() bool {
		st := h.Connector.Stats()
		return st.Handshakes == 0 && st.DTLSUnverified > 0
	})
	c := runOpenSSL(t, "s_client", "-dtls1_2", "-connect", h.Addr(), "-CAfile", ca.File, "-quiet")
	c.send("PING\n")
	c.waitOutput("+OK secure\n+PONG")
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	st := h.Connector.Stats()
	if n := len(h.Activities.Of(v1alpha1.ActivityError)); n != 0 {
		t.Errorf("%d Error activities:\n%s", n, h.Activities.Dump())
	}
	summarised := uint64(0)
	rejected := h.Activities.Of(v1alpha1.ActivityRejected)
	for _, a := range rejected {
		var n uint64
		format := "%d DTLS hello"
		if strings.Contains(a.Message, "dropped by the kernel") {
			format = "%d datagram"
		}
		if _, err := fmt.Sscanf(a.Message, format, &n); err != nil {
			t.Errorf("not a summary: %q", a.Message)
		}
		summarised += n
	}
	// Every hello is in a summary, whatever became of it: dropped by the kernel from the
	// full socket, dropped from the listener's backlog, refused, evicted for a newer one, or
	// given up for its cookie; one summary per reason.
	// The kernel drops what the listener does not read in time: counted too (Linux).
	counted := st.Rejected + st.DTLSUnverified + st.DTLSEvicted + st.DTLSBacklogDropped
	if len(rejected) > 5 || summarised != counted+st.DTLSSocketDropped || summarised != hellos {
		t.Errorf("%d summaries of %d hellos; stats %+v", len(rejected), summarised, st)
	}
}

// floodHellos sends spoofed ClientHellos to addr from 127.3.x.y sources, one every gap, until
// stop closes; it returns how many it sent once it has stopped.
func floodHellos(t *testing.T, addr *net.UDPAddr, gap time.Duration, stop <-chan struct{}) <-chan int {
	sent := make(chan int, 1)
	go func() {
		n := 0
		defer func() { sent <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 3, byte(n>>8), byte(n))})
			if err != nil {
				t.Error(err)
				return
			}
			_, err = conn.WriteToUDP(connectortest.DTLSClientHello(), addr)
			_ = conn.Close()
			if err != nil {
				t.Error(err)
				return
			}
			n++
			time.Sleep(gap)
		}
	}()
	return sent
}

// While spoofed hellos keep every place of maxConcurrentConnections taken (each holds its
// place for DTLSCookieTimeout), a real client's hello evicts the oldest unverified
// handshake rather than being refused, and the client (openssl s_client) completes its
// handshake and conversation while the flood goes on; the evictions are counted and
// summarised.
func TestRealDTLSClientServedDuringSpoofedHelloFlood(t *testing.T) {
	ca := newCA(t, "parley-test")
	cert := ca.issue("server", false, false).pair(t)
	h := start(t, `
operation: {port: 1, transport: UDP, tls: {enabled: true}, maxConcurrentConnections: 50}
conversation:
  greetings: {value: "+OK secure\n"}
  rules: [{id: 1, mode: Sync, regex: "PING", response: "+PONG\n"}]
`, func(o *connector.Options) {
		o.TLS = &connector.TLS{Certificate: &cert}
		o.RefusalSummaryInterval = time.Hour // the summaries come as it stops
	})
	addr := h.Connector.Addr().(*net.UDPAddr)
	stop := make(chan struct{})
	sent := floodHellos(t, addr, 2*time.Millisecond, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-sent
		}
	}()
	eventually(t, "the spoofed handshakes to take every place", func() bool {
		st := h.Connector.Stats()
		return st.Handshakes >= 50 && st.DTLSEvicted > 0
	})
	c := runOpenSSL(t, "s_client", "-dtls1_2", "-connect", h.Addr(), "-CAfile", ca.File, "-quiet")
	c.send("PING\n")
	c.waitOutput("+OK secure\n+PONG")
	close(stop)
	n := <-sent
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	st := h.Connector.Stats()
	if st.Total != 1 {
		t.Errorf("%d conversations, want the real client's; stats %+v", st.Total, st)
	}
	if n := len(h.Activities.Of(v1alpha1.ActivityError)); n != 0 {
		t.Errorf("%d Error activities:\n%s", n, h.Activities.Dump())
	}
	var evicted uint64
	for _, a := range h.Activities.Of(v1alpha1.ActivityRejected) {
		if strings.Contains(a.Message, "evicted before the cookie came back, for a newer hello") {
			if _, err := fmt.Sscanf(a.Message, "%d DTLS hello", &evicted); err != nil {
				t.Errorf("not a summary: %q", a.Message)
			}
		}
	}
	if evicted == 0 || evicted != st.DTLSEvicted {
		t.Errorf("%d evictions summarised, stats %+v", evicted, st)
	}
	t.Logf("%d spoofed hellos; stats %+v", n, st)
}

// A handshake given up for its cookie gives back its source's place: with
// maxConnectionsPerPeer 1, a client whose first hello went unanswered (here: a socket that
// never returns the cookie, from the same address) is served after it.
func TestUnverifiedDTLSHandshakeFreesItsSourcePlace(t *testing.T) {
	ca := newCA(t, "parley-test")
	cert := ca.issue("server", false, false).pair(t)
	h := start(t, `
operation: {port: 1, transport: UDP, tls: {enabled: true}, maxConcurrentConnections: 5, maxConnectionsPerPeer: 1}
conversation:
  greetings: {value: "+OK secure\n"}
  rules: [{id: 1, mode: Sync, regex: "PING", response: "+PONG\n"}]
`, func(o *connector.Options) { o.TLS = &connector.TLS{Certificate: &cert} })
	sendFrom(t, net.IPv4(127, 0, 0, 1), h.Connector.Addr().(*net.UDPAddr), connectortest.DTLSClientHello(), 1)
	eventually(t, "the hello to be given up", func() bool { return h.Connector.Stats().DTLSUnverified == 1 })
	c := runOpenSSL(t, "s_client", "-dtls1_2", "-connect", h.Addr(), "-CAfile", ca.File, "-quiet")
	c.send("PING\n")
	c.waitOutput("+OK secure\n+PONG")
	if st := h.Connector.Stats(); st.Rejected != 0 {
		t.Errorf("refused: %+v", st)
	}
}

// A stalled handshake costs one goroutine, the connector's: the handshake's context derives
// from the connector's stop context without a goroutine to watch it (a flood of stalled
// handshakes is that many goroutines' stacks).
func TestStalledHandshakeGoroutines(t *testing.T) {
	ca := newCA(t, "parley-test")
	cert := ca.issue("server", false, false).pair(t)
	h := start(t, fmt.Sprintf(hostileTLSRules, 1000, ""), func(o *connector.Options) {
		o.TLS = &connector.TLS{Certificate: &cert, HandshakeTimeout: time.Hour}
	})
	runtime.GC()
	before := runtime.NumGoroutine()
	const stalled = 200
	for i := range stalled {
		dialFrom(t, fmt.Sprintf("127.0.%d.%d", 1+i/200, 2+i%200), h.Addr())
	}
	eventually(t, "every handshake to start", func() bool { return h.Connector.Stats().Handshakes == stalled })
	time.Sleep(50 * time.Millisecond) // each handshake's goroutines started
	per := float64(runtime.NumGoroutine()-before) / stalled
	t.Logf("%.2f goroutines per stalled TLS handshake", per)
	if per > 1.2 {
		t.Errorf("%.2f goroutines per stalled TLS handshake, want 1", per)
	}
}
