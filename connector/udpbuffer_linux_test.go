package connector

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/freeport"
	"github.com/parley-dev/parley/rules"
)

// A UDP server asks the kernel for a receive buffer of udpReadBuffer, which the kernel caps
// at net.core.rmem_max (and doubles, for its bookkeeping): with the default, a burst of a
// millisecond of a flood is dropped before the connector reads it, real clients' datagrams
// among the spoofed ones (docs/hardening.md §1).
func TestUDPServerAsksForALargeReceiveBuffer(t *testing.T) {
	readSysctl := func(name string) int {
		t.Helper()
		b, err := os.ReadFile("/proc/sys/net/core/" + name)
		if err != nil {
			t.Skipf("cannot read net.core.%s: %v", name, err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Without the request the buffer is net.core.rmem_default; granted, twice what was
	// granted: more than the default even where rmem_max is left at it.
	rmemMax := readSysctl("rmem_max")
	c := &Connector{}
	conn, err := c.listenUDP(&rules.Program{Transport: v1alpha1.TransportUDP, IP: "127.0.0.1", Port: freeport.T(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var sockErr error
	if err := rc.Control(func(fd uintptr) {
		got, sockErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	}); err != nil {
		t.Fatal(err)
	}
	if sockErr != nil {
		t.Fatal(sockErr)
	}
	if want := 2 * min(udpReadBuffer, rmemMax); got != want {
		t.Errorf("SO_RCVBUF %d, want %d (udpReadBuffer %d, rmem_max %d)", got, want, udpReadBuffer, rmemMax)
	}
}
