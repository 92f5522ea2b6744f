//go:build !linux

package connector

import "net"

// socketOverflow is Linux's (overflow_linux.go); elsewhere the kernel's drops are not seen.
type socketOverflow struct{}

const overflowOOB = 0

func newSocketOverflow(*net.UDPConn) *socketOverflow { return &socketOverflow{} }

func (*socketOverflow) dropped([]byte) uint64 { return 0 }

func socketDrops(any) uint64 { return 0 }
