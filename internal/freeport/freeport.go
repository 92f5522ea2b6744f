// Package freeport picks a port that a test or a benchmark tool then gives a process to
// listen on.
//
// The usual trick, listening on port 0 and closing, returns a port from the kernel's
// ephemeral range: the same range the kernel draws from for the local end of every outgoing
// connection. Between the close and the process's own listen, any connection made on the
// machine (another test package dialling Redis, a client in a parallel test) may take the
// port, and the listen fails with "address already in use". Ports picked here lie below that
// range, where only explicit binds land, and each is checked free for both TCP and UDP on
// every address before it is handed out, and never handed out twice by one process.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// lowest is the first port considered: clear of well-known services' usual ports.
const lowest = 10000

// defaultEphemeralStart is Linux's default start of the ephemeral range, used when the
// range cannot be read.
const defaultEphemeralStart = 32768

var (
	mu     sync.Mutex
	handed = map[int]bool{}
)

// Pick returns a port that nothing on the machine is bound to, for TCP or UDP, on any address.
func Pick() (int, error) {
	high := ephemeralStart()
	if high <= lowest+100 {
		// An unusual range: fall back to the kernel's choice, with its race.
		return kernelChoice()
	}
	mu.Lock()
	defer mu.Unlock()
	var last error
	for range 200 {
		port := lowest + rand.IntN(high-lowest)
		if handed[port] {
			continue
		}
		if last = bindable(port); last == nil {
			handed[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port between %d and %d: %w", lowest, high-1, last)
}

// T is Pick for a test: it fails the test when no port is free.
func T(t testing.TB) int {
	t.Helper()
	port, err := Pick()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// bindable binds port on every address for TCP, then for UDP, and releases both.
func bindable(port int) error {
	addr := ":" + strconv.Itoa(port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	return pc.Close()
}

// ephemeralStart reads the start of the kernel's ephemeral port range.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return defaultEphemeralStart
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return defaultEphemeralStart
	}
	start, err := strconv.Atoi(fields[0])
	if err != nil {
		return defaultEphemeralStart
	}
	return start
}

func kernelChoice() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		return a.Port, nil
	}
	return 0, errors.New("listener without a TCP address")
}
