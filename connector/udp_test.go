package connector_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
)

// udpPeer is a real UDP client socket.
type udpPeer struct {
	t    *testing.T
	conn *net.UDPConn
}

func (h *harness) dialUDP() *udpPeer {
	h.t.Helper()
	raddr := h.Connector.Addr().(*net.UDPAddr)
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { conn.Close() })
	return &udpPeer{t: h.t, conn: conn}
}

func (u *udpPeer) send(s string) {
	u.t.Helper()
	if _, err := u.conn.Write([]byte(s)); err != nil {
		u.t.Fatal(err)
	}
}

// recv returns the next datagram.
func (u *udpPeer) recv() string {
	u.t.Helper()
	_ = u.conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65536)
	n, err := u.conn.Read(buf)
	if err != nil {
		u.t.Fatalf("no datagram: %v", err)
	}
	return string(buf[:n])
}

func (u *udpPeer) expect(want ...string) {
	u.t.Helper()
	for _, w := range want {
		if got := u.recv(); got != w {
			u.t.Fatalf("expected datagram %q, got %q", w, got)
		}
	}
}

func (u *udpPeer) expectNothing(d time.Duration) {
	u.t.Helper()
	_ = u.conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 65536)
	if n, err := u.conn.Read(buf); err == nil {
		u.t.Fatalf("expected no datagram, got %q", buf[:n])
	}
}

func TestUDPServerGreetsBeforeTheFirstReplyAndKeysByPeer(t *testing.T) {
	h := start(t, `
operation: {port: 1, transport: UDP, identifyBy: Address, interactionTimeout: 400ms}
memory: {connection: [{name: count, type: int}]}
conversation:
  greetings: {value: "HELLO"}
  timeout: {value: "TIMEOUT"}
  ending: {value: "BYE"}
  rules:
  - {id: 1, mode: Sync, regex: "PING", response: "PONG {{count}}", operation: {name: NBR_SUM, inputs: [count, "1"], outputs: [count]}}
  - {id: 2, mode: Sync, regex: "TWO", response: "one", trigger: [{ruleID: 3}]}
  - {id: 3, mode: Async, response: "two"}
`)
	a, b := h.dialUDP(), h.dialUDP()
	a.send("PING")
	a.expect("HELLO", "PONG 0")
	a.send("PING")
	a.expect("PONG 1")
	b.send("PING") // another port: another conversation, fresh memory
	b.expect("HELLO", "PONG 0")
	a.send("TWO")
	a.expect("one", "two") // several messages, one datagram each
	start := time.Now()
	a.expect("TIMEOUT", "BYE")
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("timed out after %v", d)
	}
	to := h.Activities.WaitFor(t, v1alpha1.ActivityTimedOut, 2)
	if to[0].Connection.Transport != "UDP" {
		t.Errorf("transport %q", to[0].Connection.Transport)
	}
	a.send("PING") // after the end, a new conversation starts
	a.expect("HELLO", "PONG 0")

	// The greeting goes out with the first reply, after the datagram arrived: the Input
	// activity comes after the Greeted one, in time as in order.
	greeted := map[string]metav1.MicroTime{}
	for _, act := range h.Activities.All() {
		switch {
		case act.Connection == nil:
		case act.Type == v1alpha1.ActivityGreeted:
			greeted[act.Connection.ID] = act.Time
		case act.Type == v1alpha1.ActivityInput:
			g, ok := greeted[act.Connection.ID]
			if !ok {
				t.Fatalf("%s: Input before any Greeted", act.Connection.ID)
			}
			if act.Time.Before(&g) {
				t.Errorf("%s: Input at %s, before the Greeted at %s", act.Connection.ID, act.Time.Format(time.StampNano), g.Format(time.StampNano))
			}
		}
	}
}

// The guard holds over the whole conversation, not until a second datagram (as easy to
// spoof as the first): two 1-byte datagrams never bring back a 2 KB reply.
func TestUDPAmplificationGuardHoldsPastTheSecondDatagram(t *testing.T) {
	big := strings.Repeat("X", 2000)
	h := start(t, `
operation: {port: 1, transport: UDP}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "Q", response: "`+big+`"}
  - {id: 2, mode: Sync, regex: "small", response: "ok"}
`)
	u := h.dialUDP()
	u.send("Q")
	u.send("Q")
	u.send("small") // 5 bytes in: the 2-byte reply fits; datagrams on loopback keep their order
	u.expect("ok")
	in := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 3)
	for _, a := range in[:2] {
		if !strings.Contains(a.Message, "UDP amplification guard: 2000 bytes not sent") || a.Output.Bytes != 0 {
			t.Errorf("input %q: %q, %d bytes out", a.Input.Text, a.Message, a.Output.Bytes)
		}
	}
	if st := h.Connector.Stats(); st.AmplificationHeldBytes != 4000 || st.AmplificationHeldMessages != 2 {
		t.Errorf("held back: %d bytes in %d messages, want 4000 in 2", st.AmplificationHeldBytes, st.AmplificationHeldMessages)
	}
}

// A peer that keeps sending gets replies, within three times what it sent.
func TestUDPAmplificationGuardKeepsTheRatio(t *testing.T) {
	h := start(t, `
operation: {port: 1, transport: UDP}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "AB", response: "0123456789"}
  - {id: 2, mode: Sync, regex: "end!", response: "ok"}
`)
	u := h.dialUDP()
	const sends = 30
	for range sends {
		u.send("AB") // 2 bytes in, 10 out: 5x, so some replies are held back
	}
	u.send("end!")
	replies := 0
	for got := u.recv(); got != "ok"; got = u.recv() {
		if got != "0123456789" {
			t.Fatalf("datagram %q", got)
		}
		replies++
	}
	in := h.Activities.WaitFor(t, v1alpha1.ActivityInput, sends+1)
	out, held := 0, 0
	for _, a := range in[:sends] {
		out += int(a.Output.Bytes)
		if strings.Contains(a.Message, "amplification guard") {
			held++
		}
	}
	if replies == 0 || out != 10*replies || out > 3*2*sends || held != sends-replies {
		t.Errorf("%d replies (%d bytes recorded, %d held back) to %d bytes in: want some, at most %d bytes",
			replies, out, held, 2*sends, 3*2*sends)
	}
	if st := h.Connector.Stats(); st.AmplificationHeldMessages != uint64(held) || st.AmplificationHeldBytes != uint64(10*held) {
		t.Errorf("stats %+v, %d held back", st, held)
	}
}

// amplification: Unbounded opts a rule out: its reply goes whole, the others stay bounded.
func TestUDPAmplificationOptOut(t *testing.T) {
	big := strings.Repeat("X", 2000)
	h := start(t, `
operation: {port: 1, transport: UDP}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "Q", response: "`+big+`", amplification: Unbounded}
  - {id: 2, mode: Sync, regex: "R", response: "`+big+`"}
  - {id: 3, mode: Sync, regex: "^probe", response: "ok"}
`)
	u := h.dialUDP()
	u.send("Q")
	u.expect(big)
	u.send("QR") // rules 1 and 2: 1 is sent whole and uncounted, 2 is held back
	u.send("probe")
	u.expect(big, "ok") // and nothing between: datagrams on loopback keep their order
	in := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 3)
	if in[0].Message != "" || in[0].Output.Bytes != 2000 {
		t.Errorf("opted out: %q, %d bytes", in[0].Message, in[0].Output.Bytes)
	}
	if !strings.Contains(in[1].Message, "2000 bytes not sent") || in[1].Output.Bytes != 2000 {
		t.Errorf("mixed: %q, %d bytes", in[1].Message, in[1].Output.Bytes)
	}
}

func TestUDPPerPeerRateLimit(t *testing.T) {
	h := start(t, `
operation: {port: 1, transport: UDP}
conversation: {rules: [{id: 1, mode: Sync, regex: "PING", response: "PONG"}]}
`, func(o *connector.Options) { o.UDPPeerRate, o.UDPPeerBurst = 1, 3 })
	u := h.dialUDP()
	for range 10 {
		u.send("PING")
	}
	u.expect("PONG", "PONG", "PONG")
	u.expectNothing(300 * time.Millisecond)
	if n := len(h.Activities.Of(v1alpha1.ActivityInput)); n != 3 {
		t.Errorf("%d inputs recorded past a burst of 3", n)
	}
	if st := h.Connector.Stats(); st.RateLimited != 7 {
		t.Errorf("stats %+v", st)
	}
}

func TestUDPOverCapIsRejected(t *testing.T) {
	h := start(t, `
operation: {port: 1, transport: UDP, identifyBy: Address, maxConcurrentConnections: 1}
conversation: {rules: [{id: 1, mode: Sync, regex: "PING", response: "PONG"}]}
`)
	a, b := h.dialUDP(), h.dialUDP()
	a.send("PING")
	a.expect("PONG")
	b.send("PING")
	b.expectNothing(200 * time.Millisecond)
	if r := h.Activities.WaitFor(t, v1alpha1.ActivityRejected, 1)[0]; r.Connection.Transport != "UDP" {
		t.Errorf("Rejected %+v", r.Connection)
	}
}

func TestUDPTruncatesLongDatagrams(t *testing.T) {
	h := start(t, `
operation: {port: 1, transport: UDP, maxInputSize: 10}
conversation: {default: {value: "."}}
`)
	u := h.dialUDP()
	u.send(strings.Repeat("Z", 10))
	u.send(strings.Repeat("Z", 11))
	in := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 2)
	if in[0].Input.Truncated || in[0].Input.Bytes != 10 {
		t.Errorf("exact fit: %+v", in[0].Input)
	}
	if !in[1].Input.Truncated || in[1].Input.Bytes != 10 {
		t.Errorf("one byte over: %+v", in[1].Input)
	}
}

func TestIPv6Server(t *testing.T) {
	if _, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Fatalf("this test needs IPv6 on loopback (::1): %v", err)
	}
	h := start(t, `
operation: {port: 1, ipv6: true}
conversation: {greetings: {value: "{{IP}};"}}
`)
	dialPeer(t, "tcp6", h.Addr()).expect("::1;")
}

// A conversation lives on across any number of datagrams; with the limiter off, a burst far
// beyond the default bucket is answered in full.
func TestUDPManyDatagramsOneConversation(t *testing.T) {
	h := start(t, `
operation: {port: 1, transport: UDP}
memory: {connection: [{name: count, type: int}]}
conversation: {rules: [{id: 1, mode: Sync, regex: "PING", response: "PONG {{count}}", operation: {name: NBR_SUM, inputs: [count, "1"], outputs: [count]}}]}
`, func(o *connector.Options) { o.UDPPeerRate = -1 })
	u := h.dialUDP()
	for i := range 300 {
		u.send("PING")
		u.expect(fmt.Sprintf("PONG %d", i))
	}
	if n := len(h.Activities.Of(v1alpha1.ActivityRejected)); n != 0 {
		t.Errorf("%d rejected", n)
	}
}

// sendFrom sends n datagrams of payload to addr from a socket bound to ip, which loopback
// accepts for any address of 127.0.0.0/8: the closest a test gets to spoofed sources
// without raw sockets.
func sendFrom(t *testing.T, ip net.IP, addr *net.UDPAddr, payload []byte, n int) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for range n {
		if _, err := conn.WriteToUDP(payload, addr); err != nil {
			t.Fatal(err)
		}
	}
}

// 5,000 datagrams from 1,000 sources, over the rate limit and the connection cap: a few
// summaries, not a Rejected activity each, and exact counts.
func TestUDPRefusalsAreSummarised(t *testing.T) {
	h := start(t, `
operation: {port: 1, transport: UDP, maxConcurrentConnections: 1}
conversation: {rules: [{id: 1, mode: Sync, regex: "PING", response: "PONG"}]}
`, func(o *connector.Options) {
		o.UDPPeerRate, o.UDPPeerBurst = 0.001, 2 // 2 datagrams of each source pass, 3 do not
		o.RefusalSummaryInterval = time.Hour     // one summary per reason, as the connector stops
	})
	addr := h.Connector.Addr().(*net.UDPAddr)
	const sources, each = 1000, 5
	for i := range sources {
		sendFrom(t, net.IPv4(127, 1, byte(i>>8), byte(i)), addr, []byte("PING"), each)
		if i%20 == 19 { // a few hundred datagrams in flight at most: none lost in the socket buffer
			sent := uint64((i + 1) * each)
			eventually(t, "the datagrams to be read", func() bool {
				st := h.Connector.Stats()
				return st.RateLimited+st.Rejected+2 == sent
			})
		}
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	st := h.Connector.Stats()
	// The first source's two datagrams are its conversation; every other source gets two
	// past the limiter, refused by the cap.
	if st.RateLimited != sources*3 || st.Rejected != (sources-1)*2 {
		t.Errorf("rate-limited %d, rejected %d; want %d and %d", st.RateLimited, st.Rejected, sources*3, (sources-1)*2)
	}
	rejected := h.Activities.Of(v1alpha1.ActivityRejected)
	want := []string{
		"3000 datagrams from 1000 sources refused since the last summary (at most every 1h0m0s): rate limit",
		"1998 datagrams from 999 sources refused since the last summary (at most every 1h0m0s): over maxConcurrentConnections",
	}
	if len(rejected) != len(want) {
		t.Fatalf("%d Rejected activities, want %d summaries:\n%s", len(rejected), len(want), h.Activities.Dump())
	}
	for i, a := range rejected {
		if !strings.HasPrefix(a.Message, want[i]) || a.Connection.Transport != v1alpha1.TransportUDP {
			t.Errorf("summary %d: %q", i, a.Message)
		}
	}
	if n := len(h.Activities.Of(v1alpha1.ActivityInput)); n != 2 {
		t.Errorf("%d inputs, want the first source's 2", n)
	}
	stopped := h.Activities.Of(v1alpha1.ActivityConnectorStopped)
	if all := h.Activities.All(); len(stopped) != 1 || all[len(all)-1] != stopped[0] {
		t.Error("the summaries come before ConnectorStopped")
	}
}

// The guard's window slides: bytes a peer sent more than AmplificationWindow ago no longer
// buy replies (a spoofer cannot bank an allowance), and bytes sent to it that long ago no
// longer count against it (its allowance comes back). The windows' clock is set by the
// test, one slot (a tenth of the window) at a time; a held reply is dropped, never sent
// later.
func TestUDPAmplificationWindowSlides(t *testing.T) {
	big := strings.Repeat("X", 2000)
	h := start(t, `
operation: {port: 1, transport: UDP}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "^Q$", response: "`+big+`"}
  - {id: 2, mode: Sync, regex: "^probe$", response: "ok"}
`)
	slot := func(s int64) { connector.SetAmplificationSlot(h.Connector, s) }
	inputs := 0
	// send sends s from u and waits until the connector has recorded it, so that it is
	// counted in the slot set before.
	send := func(u *udpPeer, s string) {
		t.Helper()
		u.send(s)
		inputs++
		h.Activities.WaitFor(t, v1alpha1.ActivityInput, inputs)
	}
	// next expects the next datagram to be want, reported in brief if not.
	next := func(u *udpPeer, want string) {
		t.Helper()
		if got := u.recv(); got != want {
			t.Fatalf("expected a datagram of %d bytes %.10q..., got %d bytes %.10q...", len(want), want, len(got), got)
		}
	}
	lastInput := func() *v1alpha1.ActivityRecord {
		in := h.Activities.Of(v1alpha1.ActivityInput)
		return in[len(in)-1]
	}
	bank := strings.Repeat(".", 1000) // matches no rule: 1000 bytes in, nothing out
	early, late, again := h.dialUDP(), h.dialUDP(), h.dialUDP()

	slot(1)
	send(early, bank)
	send(late, bank)
	send(again, bank)

	// again spends most of its allowance at slot 5, for the second half below.
	slot(5)
	send(again, "Q")
	next(again, big)
	// Slot 10: the window (slots 1-10) still holds the 1000 bytes: 3003 bytes allowed.
	slot(10)
	send(early, "Q")
	next(early, big)

	// Slot 11: slot 1 left the window, and the 1000 bytes with it: 3 bytes allowed.
	slot(11)
	send(late, "Q")
	if a := lastInput(); !strings.Contains(a.Message, "UDP amplification guard: 2000 bytes not sent") || a.Output.Bytes != 0 {
		t.Errorf("a reply bought by bytes sent a window ago: %q, %d bytes out", a.Message, a.Output.Bytes)
	}
	send(late, "probe")
	next(late, "ok") // and not the big reply before it, held back for good

	// again at slot 11: 1 byte in (slot 5; slot 1 left), 2000 bytes out (slot 5): over.
	send(again, "Q")
	if a := lastInput(); !strings.Contains(a.Message, "2000 bytes not sent") {
		t.Errorf("over the bound: %q", a.Message)
	}
	// Slot 15: slot 5 left the window with the 2000 bytes sent then; 700 bytes in now
	// allow 2100 (2106 with the Qs of slots 11 and 15) again.
	slot(15)
	send(again, bank[:700])
	send(again, "Q")
	if a := lastInput(); a.Message != "" || a.Output.Bytes != 2000 {
		t.Fatalf("allowance back: %q, %d bytes out", a.Message, a.Output.Bytes)
	}
	next(again, big)
	if st := h.Connector.Stats(); st.AmplificationHeldMessages != 2 || st.AmplificationHeldBytes != 4000 {
		t.Errorf("held back: %d bytes in %d messages, want 4000 in 2", st.AmplificationHeldBytes, st.AmplificationHeldMessages)
	}
}
