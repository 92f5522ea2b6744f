package connector

import (
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/parley-dev/parley/internal/freeport"
	"github.com/parley-dev/parley/internal/kerneludp"
)

// The kernel's count of datagrams dropped from a full receive buffer (SO_RXQ_OVFL), read
// as the DTLS listener reads it: a real UDP socket with a tiny buffer, bursts sent to it
// without reading, then every datagram read with its control message.

// kernelDrops is the kernel's drop count of the UDP socket bound to 127.0.0.1:port.
func kernelDrops(t *testing.T, port int) uint64 {
	t.Helper()
	n, err := kerneludp.Drops(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSocketOverflowCountsTheKernelsDrops(t *testing.T) {
	port := freeport.T(t)
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	// The smallest buffer the kernel allows: a few datagrams fit.
	if err := pc.SetReadBuffer(1); err != nil {
		t.Fatal(err)
	}
	overflow := newSocketOverflow(pc)
	if !overflow.on {
		t.Fatal("SO_RXQ_OVFL not enabled")
	}
	out, err := net.DialUDP("udp4", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	payload := make([]byte, 512)
	sent, read, dropped := 0, 0, uint64(0)
	send := func(n int) {
		t.Helper()
		for range n {
			if _, err := out.Write(payload); err != nil {
				t.Fatal(err)
			}
			sent++
		}
	}
	// drain reads every datagram queued, without waiting (MSG_DONTWAIT: an empty queue
	// ends it), and counts the drops reported with them.
	rc, err := pc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	drain := func() {
		t.Helper()
		buf := make([]byte, 2048)
		oob := make([]byte, overflowOOB)
		for {
			var oobn int
			var rerr error
			if err := rc.Control(func(fd uintptr) {
				_, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_DONTWAIT)
			}); err != nil {
				t.Fatal(err)
			}
			if errors.Is(rerr, unix.EAGAIN) {
				return
			}
			if rerr != nil {
				t.Fatal(rerr)
			}
			read++
			dropped += overflow.dropped(oob[:oobn])
		}
	}

	// Bursts of 200 into a buffer of a few: most are dropped, each time. The drops of a
	// burst are reported with the next datagram queued: the first of the next burst, or a
	// lone one sent into the drained buffer. (On loopback a send has queued or dropped its
	// datagram by the time it returns, unless the kernel defers that under load: then the
	// lone datagram is sent again, until everything sent is accounted for.)
	for range 3 {
		send(200)
		drain()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		send(1)
		drain()
		if uint64(read)+dropped >= uint64(sent) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if dropped == 0 || uint64(read)+dropped != uint64(sent) {
		t.Fatalf("%d datagrams sent, %d read, %d counted dropped", sent, read, dropped)
	}
	t.Logf("%d datagrams sent, %d read, %d counted dropped", sent, read, dropped)
	if k := kernelDrops(t, port); dropped != k {
		t.Errorf("%d counted dropped, the kernel says %d", dropped, k)
	}
}

// Reading the count costs no allocation: it runs for every datagram the DTLS listener reads.
func TestSocketOverflowCountAllocatesNothing(t *testing.T) {
	oob := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_SOCKET, unix.SO_RXQ_OVFL
	h.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(oob[unix.CmsgLen(0):], 7)
	o := &socketOverflow{on: true}
	if got := o.dropped(oob); got != 7 {
		t.Fatalf("dropped %d, want 7", got)
	}
	if allocs := testing.AllocsPerRun(100, func() { o.dropped(oob) }); allocs != 0 {
		t.Errorf("%v allocations per read of the count", allocs)
	}
}

// overflowedSocket is a UDP socket on 127.0.0.1 with the smallest receive buffer the
// kernel allows, sent 200 datagrams nobody read: most were dropped. It returns the socket
// and the kernel's drop count, once still (on loopback a send has queued or
// dropped its datagram by the time it returns, unless the kernel defers it under load).
func overflowedSocket(t *testing.T) (*net.UDPConn, uint64) {
	t.Helper()
	port := freeport.T(t)
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	if err := pc.SetReadBuffer(1); err != nil {
		t.Fatal(err)
	}
	out, err := net.DialUDP("udp4", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	payload := make([]byte, 512)
	for range 200 {
		if _, err := out.Write(payload); err != nil {
			t.Fatal(err)
		}
	}
	dropped, err := kerneludp.SettledDrops(port, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return pc, dropped
}

// A plain UDP server's kernel drops are read when asked (SO_MEMINFO), not with each
// datagram: Stats().UDPSocketDropped agrees with the kernel's own count, for a socket served
// now and for one no longer served.
func TestUDPServerCountsTheKernelsDrops(t *testing.T) {
	pc, dropped := overflowedSocket(t)
	var c Connector
	c.packets = map[packetConn]struct{}{}
	if !c.trackPacket(pc) {
		t.Fatal("not tracked")
	}
	if served := c.Stats().UDPSocketDropped; served != dropped {
		t.Fatalf("counted %d dropped, the kernel says %d", served, dropped)
	}
	c.untrackPacket(pc)
	if closed := c.Stats().UDPSocketDropped; closed != dropped {
		t.Errorf("counted %d dropped once the socket is no longer served, the kernel says %d", closed, dropped)
	}
}
