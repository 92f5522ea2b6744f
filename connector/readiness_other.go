//go:build !linux

package connector

import "net"

// readiness is Linux's (readiness_linux.go); elsewhere a read loop keeps its buffer.
type readiness struct{}

func newReadiness(net.Conn) *readiness { return nil }

func (*readiness) readInto(net.Conn, int) (*[]byte, int, error) {
	panic("readiness: not on this system")
}

// writeNow is Linux's (readiness_linux.go); elsewhere every reply is written under its
// deadline.
func writeNow(net.Conn, []byte) (int, bool, error) { return 0, false, nil }
