package connector_test

import (
	"testing"

	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/connectortest"
)

// What the kernel dropped from a served UDP socket's full receive buffer is still counted
// once the connector has stopped and closed it (a closed socket has no count to give):
// Shutdown and Close read it first.
func TestUDPKernelDropsOutliveTheStop(t *testing.T) {
	for _, stop := range []string{"Shutdown", "Close"} {
		t.Run(stop, func(t *testing.T) {
			pc, dropped := connector.OverflowedSocket(t) // before the connector reads
			acts := &connectortest.Collector{}
			c := newConnector(t, "udp", `operation: {port: 1, transport: UDP}`, newRegister(acts))
			s := serveUDP(t, c, pc)
			if stop == "Shutdown" {
				if err := c.Shutdown(t.Context()); err != nil {
					t.Fatal(err)
				}
			} else if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			s.result(t)
			if got := c.Stats().UDPSocketDropped; got != dropped {
				t.Errorf("%d datagrams counted dropped after %s, the kernel dropped %d", got, stop, dropped)
			}
		})
	}
}
