package pod_test

import (
	"strconv"
	"strings"
	"testing"

	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/connector/pod"
	"github.com/parley-dev/parley/connector/uplink/uplinktest"
	"github.com/parley-dev/parley/internal/freeport"
)

// The heartbeat counts the conversations EvictIdlest ended and the datagrams the per-peer
// rate limit dropped, and keeps counting across the connectors of one process (new network
// settings replace the connector): the engine adds them into status.connections.evicted
// and status.datagrams.rateLimited. The pod's metrics carry over the same way, those read
// from the connector's Stats (rate-limited datagrams) included.
func TestHeartbeatCountsEvictedConversations(t *testing.T) {
	e := uplinktest.New(t)
	e.SetToken(engineToken)
	port, port2, metricsPort := freeport.T(t), freeport.T(t), freeport.T(t)
	e.SetConfig(uplinktest.Config(t, connectortest.OneSlotEvictIdlest, "decoy", 1, port))
	p := startConnector(t, e, func(o *pod.Options) { o.MetricsAddress = "127.0.0.1:" + strconv.Itoa(metricsPort) })
	connectortest.PingUDPFrom(t, "127.0.0.1", port)
	connectortest.PingUDPFrom(t, "127.0.0.2", port) // the one slot: 127.0.0.1's conversation is evicted
	last := func() *enginev1.Heartbeat {
		if hbs := e.Heartbeats(); len(hbs) > 0 {
			return hbs[len(hbs)-1]
		}
		return nil
	}
	evicted := func(want uint64) func() bool {
		return func() bool { return last().GetEvictedConnections() == want }
	}
	uplinktest.Eventually(t, "a heartbeat with 1 evicted", evicted(1))
	// A burst from a new source (127.0.0.2 again, another port: identifyBy: Address) over its
	// address's rate (100/s, bursts of 200): it takes the slot (a second eviction), and the
	// datagrams beyond the rate are dropped and counted.
	connectortest.BurstUDPFrom(t, "127.0.0.2", port, 600)
	var limited string
	uplinktest.Eventually(t, "rate-limited datagrams counted", func() bool {
		limited = metricValue(scrape(t, metricsPort), "parley_connector_datagrams_rate_limited_total")
		return limited != "" && limited != "0"
	})
	uplinktest.Eventually(t, "a heartbeat with 2 evicted", evicted(2))
	var hbLimited uint64
	uplinktest.Eventually(t, "a heartbeat with rate-limited datagrams", func() bool {
		hbLimited = last().GetRateLimitedDatagrams()
		return hbLimited > 0
	})

	e.SetConfig(uplinktest.Config(t, connectortest.OneSlotEvictIdlest, "decoy", 2, port2))
	p.waitLog(t, "network settings changed")
	connectortest.PingUDPFrom(t, "127.0.0.3", port2)
	connectortest.PingUDPFrom(t, "127.0.0.4", port2)
	uplinktest.Eventually(t, "a heartbeat with 3 evicted, the first connector's included", evicted(3))
	// That heartbeat read the new connector, which saw no burst: at least what the first
	// one counted before, not the new one's alone (0).
	if got := last().GetRateLimitedDatagrams(); got < hbLimited {
		t.Errorf("heartbeat: %d rate-limited datagrams after the connector was replaced, want at least the %d counted before", got, hbLimited)
	}
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
