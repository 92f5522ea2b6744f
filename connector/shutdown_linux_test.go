package connector_test

import (
	"net"
	"testing"

	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/internal/freeport"
)

// What the kernel dropped from a served UDP socket's full receive buffer is still counted
// once the connector has stopped and closed it (a closed socket has no count to give):
// Shutdown and Close read it first.
func TestUDPKernelDropsOutliveTheStop(t *testing.T) {
	for _, stop := range []string{"Shutdown", "Close"} {
		t.Run(stop, func(t *testing.T) {
			port := freeport.T(t)
			pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
			if err != nil {
				t.Fatal(err)
			}
			if err := pc.SetReadBuffer(1); err != nil { // the smallest the kernel allows: a few datagrams fit
				t.Fatal(err)
			}
			out, err := net.DialUDP("udp4", nil, pc.LocalAddr().(*net.UDPAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			for range 200 { // before the connector reads: most are dropped
				if _, err := out.Write(make([]byte, 512)); err != nil {
					t.Fatal(err)
				}
			}
			// On loopback a send has queued or dropped its datagram by the time it returns,
			// unless the kernel defers it under load: wait until the count is still.
			var dropped uint64
			eventually(t, "the kernel's count to settle", func() bool {
				before := dropped
				dropped = connector.KernelDrops(t, port)
				return dropped > 0 && dropped == before
			})
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
