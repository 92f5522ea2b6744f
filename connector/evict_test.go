package connector_test

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
)

// operation.capacityPolicy: EvictIdlest (docs/hardening.md §5): a UDP server at
// maxConcurrentConnections ends the conversation idle the longest for a new source, as its
// interactionTimeout would, instead of refusing the new source.

// evictRules are a UDP server of 3 slots whose conversations never time out by themselves
// during a test. Its replies are 1 byte, within the amplification guard's allowance of one
// "PING": an evicted conversation's timeout and ending both go out.
const evictRules = `
operation: {port: 1, transport: UDP, identifyBy: Address, maxConcurrentConnections: 3, interactionTimeout: 1h%s}
conversation:
  timeout: {value: "T"}
  ending: {value: "E"}
  rules: [{id: 1, mode: Sync, regex: "PING", response: "P"}]
`

// dialUDPFrom is dialUDP from a socket bound to ip (loopback takes any address of
// 127.0.0.0/8): another source.
func (h *harness) dialUDPFrom(ip string) *udpPeer {
	h.t.Helper()
	conn, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)}, h.Connector.Addr().(*net.UDPAddr))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { conn.Close() })
	return &udpPeer{t: h.t, conn: conn}
}

// ping sends PING and waits for its reply: once it has come, the conversation's last input
// is on the connector's clock, after that of every ping before it.
func (u *udpPeer) ping() {
	u.t.Helper()
	u.send("PING")
	u.expect("P")
}

func (u *udpPeer) addr() string { return u.conn.LocalAddr().String() }

// evictions returns the TimedOut activities of evicted conversations, by peer.
func evictions(acts []*v1alpha1.ActivityRecord) map[string]*v1alpha1.ActivityRecord {
	out := map[string]*v1alpha1.ActivityRecord{}
	for _, a := range acts {
		if a.Type == v1alpha1.ActivityTimedOut && strings.Contains(a.Message, "capacityPolicy EvictIdlest") {
			out[a.Connection.Peer] = a
		}
	}
	return out
}

// Three sources fill the slots; a fourth is answered, and the first, idle the longest, gets
// its timeout and ending and is recorded TimedOut, evicted; the others live on.
func TestUDPEvictIdlestServesANewSourceAtTheCap(t *testing.T) {
	h := start(t, fmt.Sprintf(evictRules, ", capacityPolicy: EvictIdlest"))
	a, b, c, d := h.dialUDP(), h.dialUDP(), h.dialUDP(), h.dialUDP()
	a.ping()
	b.ping()
	c.ping()
	d.ping() // served at the cap
	a.expect("T", "E")
	to := h.Activities.WaitFor(t, v1alpha1.ActivityTimedOut, 1)[0]
	if to.Connection.Peer != a.addr() || to.Rules == nil || to.Rules.Basic != v1alpha1.BasicTimeout ||
		!strings.HasPrefix(to.Message, "evicted for a new peer at maxConcurrentConnections (capacityPolicy EvictIdlest): idle for ") {
		t.Errorf("TimedOut of %s (a is %s), rules %+v: %q", to.Connection.Peer, a.addr(), to.Rules, to.Message)
	}
	b.ping() // b and c live on: their next datagram is answered, and nothing came before
	c.ping()
	st := h.Connector.Stats()
	if st.Evicted != 1 || st.Rejected != 0 || st.Active != 3 || st.Total != 4 {
		t.Errorf("stats %+v: want 1 evicted, none rejected, 3 active of 4", st)
	}
	if n := len(h.Activities.Of(v1alpha1.ActivityRejected)); n != 0 {
		t.Errorf("%d Rejected:\n%s", n, h.Activities.Dump())
	}
}

// Refuse, written or by default, is the lifecycle as it was: the new source is refused
// and the live conversations go on untouched.
func TestUDPCapacityPolicyRefuseRefusesTheNewSource(t *testing.T) {
	for name, policy := range map[string]string{"default": "", "Refuse": ", capacityPolicy: Refuse"} {
		t.Run(name, func(t *testing.T) {
			h := start(t, fmt.Sprintf(evictRules, policy))
			a, b, c, d := h.dialUDP(), h.dialUDP(), h.dialUDP(), h.dialUDP()
			a.ping()
			b.ping()
			c.ping()
			d.send("PING")
			eventually(t, "the fourth source refused", func() bool { return h.Connector.Stats().Rejected == 1 })
			a.ping() // the first datagram a gets is its reply: no timeout, no ending
			if st := h.Connector.Stats(); st.Evicted != 0 || st.Active != 3 || st.Total != 3 {
				t.Errorf("stats %+v", st)
			}
			if err := h.Stop(); err != nil {
				t.Fatal(err)
			}
			if n := rejections(h.Activities.Of(v1alpha1.ActivityRejected), "1 datagram from 1 source refused since the last summary (at most every 10s): over maxConcurrentConnections"); n != 1 {
				t.Errorf("no refusal over the cap:\n%s", h.Activities.Dump())
			}
		})
	}
}

// maxConnectionsPerPeer comes first: at the cap, a source at its own cap is refused, never
// served by an eviction; another source then is.
func TestUDPEvictIdlestKeepsThePerPeerCap(t *testing.T) {
	h := start(t, fmt.Sprintf(evictRules, ", maxConnectionsPerPeer: 2, capacityPolicy: EvictIdlest"))
	a1, a2, b := h.dialUDPFrom("127.0.0.2"), h.dialUDPFrom("127.0.0.2"), h.dialUDPFrom("127.0.0.3")
	a1.ping()
	a2.ping()
	b.ping()
	h.dialUDPFrom("127.0.0.2").send("PING") // a third of 127.0.0.2
	eventually(t, "the third conversation of 127.0.0.2 refused", func() bool { return h.Connector.Stats().Rejected == 1 })
	if st := h.Connector.Stats(); st.Evicted != 0 || st.Total != 3 {
		t.Fatalf("stats %+v: a source over its cap evicted a conversation", st)
	}
	h.dialUDPFrom("127.0.0.4").ping()
	a1.expect("T", "E")
	if st := h.Connector.Stats(); st.Evicted != 1 || st.Rejected != 1 || st.Total != 4 {
		t.Errorf("stats %+v", st)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := rejections(h.Activities.Of(v1alpha1.ActivityRejected), "over maxConnectionsPerPeer (2 per source)"); n != 1 {
		t.Errorf("refusal does not name the per-peer cap:\n%s", h.Activities.Dump())
	}
}

// The conversation evicted is the one whose last input is the oldest, whatever the order
// the conversations started in: three evictions in a row take b, c and a, in the order of
// their last inputs, never the newest.
func TestUDPEvictIdlestEvictsTheLeastRecentInput(t *testing.T) {
	h := start(t, fmt.Sprintf(evictRules, ", capacityPolicy: EvictIdlest"))
	a, b, c := h.dialUDP(), h.dialUDP(), h.dialUDP()
	a.ping()
	b.ping()
	c.ping()
	a.ping() // a started first, but spoke last: b is the idlest, then c, then a
	for i, victim := range []*udpPeer{b, c, a} {
		h.dialUDP().ping()
		victim.expect("T", "E")
		if got := evictions(h.Activities.WaitFor(t, v1alpha1.ActivityTimedOut, i+1)); got[victim.addr()] == nil || len(got) != i+1 {
			t.Fatalf("eviction %d: want %s evicted, got %v", i+1, victim.addr(), keys(got))
		}
	}
	if st := h.Connector.Stats(); st.Evicted != 3 || st.Rejected != 0 {
		t.Errorf("stats %+v", st)
	}
}

// A busy conversation (its lock held by a step under way) is not waited for and not the
// next victim: the idlest that is free is evicted instead, and the new source is served.
func TestUDPEvictIdlestPassesOverABusyConversation(t *testing.T) {
	h := start(t, fmt.Sprintf(evictRules, ", capacityPolicy: EvictIdlest"))
	a, b, c := h.dialUDP(), h.dialUDP(), h.dialUDP()
	a.ping()
	b.ping()
	c.ping() // a is the idlest, then b
	release := sync.OnceFunc(connector.HoldConversation(h.Connector, netip.MustParseAddrPort(a.addr())))
	t.Cleanup(release) // before the connector stops, should the test fail first
	h.dialUDP().ping() // served at the cap, with a busy
	b.expect("T", "E")
	if got := evictions(h.Activities.WaitFor(t, v1alpha1.ActivityTimedOut, 1)); got[b.addr()] == nil || len(got) != 1 {
		t.Fatalf("want %s (b) evicted, a (%s) being busy; got %v", b.addr(), a.addr(), keys(got))
	}
	release()
	a.ping() // a lives on
	if st := h.Connector.Stats(); st.Evicted != 1 || st.Rejected != 0 {
		t.Errorf("stats %+v: want 1 evicted, none rejected", st)
	}
}

// A flood of new sources, each with one datagram, over 8 slots whose conversations also time
// out by themselves meanwhile: every source is served (none refused), evictions and idle
// timeouts race without harm (the race detector watches), and each evicted conversation is
// counted and recorded once.
func TestUDPEvictIdlestUnderAFloodServesEverySource(t *testing.T) {
	h := start(t, `
operation: {port: 1, transport: UDP, identifyBy: Address, maxConcurrentConnections: 8, interactionTimeout: 20ms, capacityPolicy: EvictIdlest}
conversation:
  timeout: {value: "T"}
  rules: [{id: 1, mode: Sync, regex: "PING", response: "P"}]
`, func(o *connector.Options) { o.UDPPeerRate = -1 })
	addr := h.Connector.Addr().(*net.UDPAddr)
	const sources = 400
	for i := range sources {
		sendFrom(t, net.IPv4(127, 2, byte(i>>8), byte(i)), addr, []byte("PING"), 1)
		if i%20 == 19 { // a few datagrams in flight at most: none lost in the socket buffer
			eventually(t, "the datagrams to be read", func() bool { return h.Connector.Stats().Total == uint64(i+1) })
		}
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	st := h.Connector.Stats()
	if st.Total != sources || st.Rejected != 0 || st.Active != 0 {
		t.Errorf("stats %+v: want %d conversations, none refused", st, sources)
	}
	evicted, idle := 0, 0
	for _, a := range h.Activities.Of(v1alpha1.ActivityTimedOut) {
		switch {
		case strings.Contains(a.Message, "capacityPolicy EvictIdlest"):
			evicted++
		case a.Message == "idle for 20ms":
			idle++
		default:
			t.Errorf("TimedOut %q", a.Message)
		}
	}
	ended := len(h.Activities.Of(v1alpha1.ActivityEnded))
	if uint64(evicted) != st.Evicted || evicted+idle+ended != sources {
		t.Errorf("%d evicted (stats: %d), %d idle, %d ended at the stop: want %d in all", evicted, st.Evicted, idle, ended, sources)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
