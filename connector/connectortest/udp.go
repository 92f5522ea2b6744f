package connectortest

import (
	"net"
	"testing"
	"time"
)

// OneSlotEvictIdlest is a UDP server of one slot that ends its conversation for a new
// source (operation.capacityPolicy: EvictIdlest); PING is answered P.
const OneSlotEvictIdlest = `
operation: {port: 7000, transport: UDP, identifyBy: Address, maxConcurrentConnections: 1, interactionTimeout: 1h, capacityPolicy: EvictIdlest}
conversation:
  rules: [{id: 1, mode: Sync, regex: "PING", response: "P"}]
`

// UDPPing is a UDP server that answers PING with P, one conversation per source address;
// its sources are held to the per-peer rate limit (100 datagrams a second, bursts of 200,
// unless the connector is told otherwise).
const UDPPing = `
operation: {port: 7000, transport: UDP, identifyBy: Address, interactionTimeout: 1h}
conversation:
  rules: [{id: 1, mode: Sync, regex: "PING", response: "P"}]
`

// PingUDPFrom sends PING to 127.0.0.1:port from ip (any address of 127.0.0.0/8), again
// each second until P comes back (the server may not listen yet): the source has a
// conversation then.
func PingUDPFrom(t testing.TB, ip string, port int) {
	t.Helper()
	conn, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 16)
	for deadline := time.Now().Add(wait); ; {
		_, _ = conn.Write([]byte("PING"))
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		if err == nil && string(buf[:n]) == "P" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s got no P from port %d within %v: %q, %v", ip, port, wait, buf[:n], err)
		}
	}
}

// BurstUDPFrom sends n PINGs to 127.0.0.1:port from ip at once, without reading: over a
// source's rate (100 datagrams a second, bursts of 200, by default), those beyond it are
// dropped by the per-peer rate limit and counted.
func BurstUDPFrom(t testing.TB, ip string, port, n int) {
	t.Helper()
	conn, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for range n {
		_, _ = conn.Write([]byte("PING"))
	}
}
