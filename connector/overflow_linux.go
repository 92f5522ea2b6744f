package connector

import (
	"encoding/binary"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// socketOverflow counts the datagrams the kernel dropped from a UDP socket's full receive
// buffer, as Linux reports them (SO_RXQ_OVFL): with each datagram read, the number dropped
// so far. Drops after the last datagram read are seen with the next one.
type socketOverflow struct {
	on   bool
	last uint32
}

// overflowOOB is the size of the control buffer each read is given for the count.
const overflowOOB = 32

func newSocketOverflow(pc *net.UDPConn) *socketOverflow {
	o := &socketOverflow{}
	rc, err := pc.SyscallConn()
	if err != nil {
		return o
	}
	_ = rc.Control(func(fd uintptr) {
		o.on = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1) == nil
	})
	return o
}

// dropped returns how many datagrams the kernel dropped since the last call, from the
// control messages of a read.
func (o *socketOverflow) dropped(oob []byte) uint64 {
	if !o.on || len(oob) == 0 {
		return 0
	}
	// One message at a time, in place: this runs for every datagram the listener reads, and
	// parsing them all at once allocates.
	for len(oob) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SO_RXQ_OVFL && len(data) >= 4 {
			n := binary.NativeEndian.Uint32(data)
			d := n - o.last // the kernel's counter wraps at 2^32; so does the difference
			o.last = n
			return uint64(d)
		}
		oob = rest
	}
	return 0
}

// socketDrops is how many datagrams the kernel has dropped from pc's full receive buffer
// since it was opened (SO_MEMINFO's SK_MEMINFO_DROPS): one system call when asked, nothing
// per datagram, which a plain UDP server's read loop, reading without a control buffer,
// would otherwise pay.
func socketDrops(pc any) uint64 {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	var drops uint64
	_ = rc.Control(func(fd uintptr) {
		var info [unix.SK_MEMINFO_VARS]uint32
		size := uint32(unsafe.Sizeof(info))
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
		if errno == 0 && size > unix.SK_MEMINFO_DROPS*4 {
			drops = uint64(info[unix.SK_MEMINFO_DROPS])
		}
	})
	return drops
}
