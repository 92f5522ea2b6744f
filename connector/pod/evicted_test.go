package pod_test

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/connector/pod"
	"github.com/parley-dev/parley/connector/uplink/uplinktest"
	"github.com/parley-dev/parley/internal/freeport"
)

// The heartbeat counts the conversations EvictIdlest ended, and keeps counting across the
// connectors of one process (new network settings replace the connector): the engine adds
// them into status.connections.evicted. The pod's metrics carry over the same way, those
// read from the connector's Stats (rate-limited datagrams) included.
func TestHeartbeatCountsEvictedConversations(t *testing.T) {
	e := uplinktest.New(t)
	e.SetToken(engineToken)
	port, port2, metricsPort := freeport.T(t), freeport.T(t), freeport.T(t)
	e.SetConfig(uplinktest.Config(t, connectortest.OneSlotEvictIdlest, "decoy", 1, port))
	p := startConnector(t, e, func(o *pod.Options) { o.MetricsAddress = "127.0.0.1:" + strconv.Itoa(metricsPort) })
	connectortest.PingUDPFrom(t, "127.0.0.1", port)
	connectortest.PingUDPFrom(t, "127.0.0.2", port) // the one slot: 127.0.0.1's conversation is evicted
	evicted := func(want uint64) func() bool {
		return func() bool {
			hbs := e.Heartbeats()
			return len(hbs) > 0 && hbs[len(hbs)-1].GetEvictedConnections() == want
		}
	}
	uplinktest.Eventually(t, "a heartbeat with 1 evicted", evicted(1))
	// A burst from a new source (127.0.0.2 again, another port: identifyBy: Address) over its
	// address's rate (100/s, bursts of 200): it takes the slot (a second eviction), and the
	// datagrams beyond the rate are dropped and counted.
	burst, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer burst.Close()
	for range 600 {
		_, _ = burst.Write([]byte("PING"))
	}
	var limited string
	uplinktest.Eventually(t, "rate-limited datagrams counted", func() bool {
		limited = metricValue(scrape(t, metricsPort), "parley_connector_datagrams_rate_limited_total")
		return limited != "" && limited != "0"
	})
	uplinktest.Eventually(t, "a heartbeat with 2 evicted", evicted(2))

	e.SetConfig(uplinktest.Config(t, connectortest.OneSlotEvictIdlest, "decoy", 2, port2))
	p.waitLog(t, "network settings changed")
	connectortest.PingUDPFrom(t, "127.0.0.3", port2)
	connectortest.PingUDPFrom(t, "127.0.0.4", port2)
	uplinktest.Eventually(t, "a heartbeat with 3 evicted, the first connector's included", evicted(3))
	// The metrics, counters, count both connectors' too.
	s := scrape(t, metricsPort)
	if got := metricValue(s, "parley_connector_connections_evicted_total"); got != "3" {
		t.Errorf("parley_connector_connections_evicted_total %s, want 3", got)
	}
	// At least what was counted before (the burst may still have been read then), not
	// the new connector's alone (0).
	got, _ := strconv.Atoi(metricValue(s, "parley_connector_datagrams_rate_limited_total"))
	if before, _ := strconv.Atoi(limited); got < before {
		t.Errorf("parley_connector_datagrams_rate_limited_total %d after the connector was replaced, want at least the %d counted before", got, before)
	}
}

// metricValue is the value of the unlabelled metric name in a scrape ("" when absent).
func metricValue(scrape, name string) string {
	for line := range strings.SplitSeq(scrape, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}
