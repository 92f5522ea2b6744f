package pod_test

import (
	"net"
	"testing"

	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/connector/uplink/uplinktest"
	"github.com/parley-dev/parley/internal/freeport"
)

// The heartbeat counts the UDP datagrams the per-peer rate limit dropped, and keeps
// counting across the connectors of one process (new network settings replace the
// connector): the engine adds them into status.datagrams.rateLimited.
func TestHeartbeatCountsRateLimitedDatagrams(t *testing.T) {
	e := uplinktest.New(t)
	e.SetToken(engineToken)
	port, port2 := freeport.T(t), freeport.T(t)
	e.SetConfig(uplinktest.Config(t, connectortest.UDPPing, "decoy", 1, port))
	p := startConnector(t, e)
	connectortest.PingUDPFrom(t, "127.0.0.1", port) // serving now
	// A burst from one source over its address's rate (100/s, bursts of 200): the datagrams
	// beyond it are dropped and counted (those the kernel dropped first are not).
	burst, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer burst.Close()
	for range 600 {
		_, _ = burst.Write([]byte("PING"))
	}
	last := func() (hb struct{ total, rateLimited uint64 }) {
		if hbs := e.Heartbeats(); len(hbs) > 0 {
			h := hbs[len(hbs)-1]
			hb.total, hb.rateLimited = h.GetTotalConnections(), h.GetRateLimitedDatagrams()
		}
		return hb
	}
	var before uint64
	uplinktest.Eventually(t, "a heartbeat with rate-limited datagrams", func() bool {
		before = last().rateLimited
		return before > 0
	})

	e.SetConfig(uplinktest.Config(t, connectortest.UDPPing, "decoy", 2, port2))
	p.waitLog(t, "network settings changed")
	connectortest.PingUDPFrom(t, "127.0.0.3", port2)
	// The third conversation is the new connector's: a heartbeat counting it reads that
	// connector, which saw no burst.
	uplinktest.Eventually(t, "a heartbeat of the new connector", func() bool { return last().total == 3 })
	if got := last().rateLimited; got < before {
		t.Errorf("heartbeat: %d rate-limited datagrams after the connector was replaced, want at least the %d counted before", got, before)
	}
}
