package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestPicksOutsideTheEphemeralRange: ports handed out lie where outgoing connections never
// land, are distinct, and a process can listen on each for TCP and UDP.
func TestPicksOutsideTheEphemeralRange(t *testing.T) {
	high := ephemeralStart()
	seen := map[int]bool{}
	for range 50 {
		port := T(t)
		if port < lowest || port >= high {
			t.Fatalf("port %d outside [%d, %d)", port, lowest, high)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
	}
	for port := range seen {
		ln, err := net.Listen("tcp4", ":"+strconv.Itoa(port))
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenPacket("udp4", ":"+strconv.Itoa(port))
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		pc.Close()
	}
}

// TestSkipsABoundPort: a port something listens on is never handed out.
func TestSkipsABoundPort(t *testing.T) {
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := bindable(ln.Addr().(*net.TCPAddr).Port); err == nil {
		t.Fatal("a port in use was found bindable")
	}
}
