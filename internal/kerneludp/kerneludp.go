// Package kerneludp reads what Linux counts for a UDP socket, for the tests that overflow
// one's receive buffer and check that Parley counts the datagrams the kernel dropped.
package kerneludp

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Drops is the drop counter Linux keeps for the UDP socket bound to 127.0.0.1:port: the
// last column of its line in /proc/self/net/udp, which lists the sockets of the network
// namespace (another process's among them).
func Drops(port int) (uint64, error) {
	f, err := os.Open("/proc/self/net/udp")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	local := fmt.Sprintf("0100007F:%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 2 && fields[1] == local {
			n, err := strconv.ParseUint(fields[len(fields)-1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("drops of %q: %w", sc.Text(), err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("no socket on %s in /proc/self/net/udp (%v)", local, sc.Err())
}

// SettledDrops is Drops once datagrams have been dropped and the count holds still between
// two reads 10 ms apart: on loopback a send has queued or dropped its datagram by the time
// it returns, unless the kernel defers that under load. It gives up after wait.
func SettledDrops(port int, wait time.Duration) (uint64, error) {
	var dropped uint64
	for deadline := time.Now().Add(wait); ; time.Sleep(10 * time.Millisecond) {
		before := dropped
		n, err := Drops(port)
		if err != nil {
			return 0, err
		}
		if dropped = n; dropped > 0 && dropped == before {
			return dropped, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the kernel's drop count did not settle in %v: %d", wait, dropped)
		}
	}
}
