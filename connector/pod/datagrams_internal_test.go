package pod

import (
	"testing"

	"github.com/go-logr/logr"

	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/metrics"
)

// The heartbeat's dropped datagrams are those lost for lack of room before any
// conversation read them (the UDP and DTLS sockets' full receive buffers, the DTLS
// listener's full backlog and per-source buffers), no others, and the metrics count the
// same ones: one snapshot serves both. The pod tests cannot make the kernel drop on
// demand (the connector reads as fast as loopback sends), so the replaced connectors'
// counts stand in for a flood here.
func TestSnapshotCountsDroppedDatagrams(t *testing.T) {
	p := &process{o: Options{EngineAddress: "127.0.0.1:1", EngineServerName: "engine", Connector: "decoy", Namespace: "ns", Pod: "decoy-0"},
		log: logr.Discard()}
	if err := p.setup(); err != nil {
		t.Fatal(err)
	}
	p.retired = datagramCountsOf(connector.Stats{
		RateLimited: 1, UDPSocketDropped: 2, DTLSSocketDropped: 4, DTLSBacklogDropped: 8, DTLSBufferDropped: 16,
		// Read by a handshake, not dropped for lack of room.
		DTLSEvicted: 32, DTLSUnverified: 64,
		// Conversations, not datagrams.
		Rejected: 128, Evicted: 256,
	})
	hb := p.heartbeat()
	if hb.GetRateLimitedDatagrams() != 1 || hb.GetDroppedDatagrams() != 2+4+8+16 {
		t.Errorf("heartbeat: %d rate-limited, %d dropped; want 1 and %d", hb.GetRateLimitedDatagrams(), hb.GetDroppedDatagrams(), 2+4+8+16)
	}
	m := p.counters()
	want := metrics.DTLSDropped{Evicted: 32, Backlog: 8, Buffer: 16, Socket: 4}
	if m.RateLimitedDatagrams != 1 || m.UDPSocketDropped != 2 || m.DTLSDropped != want {
		t.Errorf("metrics: %d rate-limited, %d UDP socket dropped, DTLS %+v; want 1, 2, %+v", m.RateLimitedDatagrams, m.UDPSocketDropped, m.DTLSDropped, want)
	}
}
