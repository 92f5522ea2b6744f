package connector

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
)

// A Broken activity says a socket call's error as the call and its cause, and any other
// error whole; the first costs one allocation, not net.OpError's ten or so.
func TestBrokenMessage(t *testing.T) {
	peer := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7000}
	reset := &net.OpError{Op: "read", Net: "tcp4", Source: local, Addr: peer, Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"a reset", reset, "read: connection reset by peer"},
		{"a broken pipe, wrapped", errors.Join(errors.New("reply"), &net.OpError{Op: "write", Net: "tcp4", Source: local, Addr: peer, Err: os.NewSyscallError("write", syscall.EPIPE)}), "write: broken pipe"},
		{"a TLS alert", &net.OpError{Op: "remote error", Err: tls.AlertError(20)}, "remote error: tls: bad record MAC"},
		{"a deadline", &net.OpError{Op: "read", Net: "tcp4", Source: local, Addr: peer, Err: os.ErrDeadlineExceeded}, "read tcp4 127.0.0.1:7000->127.0.0.1:40000: i/o timeout"},
		{"framing", errors.New("frame over maxFrameSize (64 bytes)"), "frame over maxFrameSize (64 bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := brokenMessage(tc.err); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { _ = brokenMessage(reset) }); n > 1 {
		t.Errorf("%v allocations for a reset's message, want at most 1", n)
	}
}
