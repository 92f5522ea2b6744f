package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
)

// The baseline is the least a Go server of the benchmark's shape does, with nothing Parley
// adds (rules, memory, activities):
//
//   - TCP: one goroutine per connection, the greeting on connect, then one read of at most
//     1024 bytes (Parley's default maxInputSize) is one input; an input containing PING is
//     answered "+PONG\r\n".
//   - UDP: one read loop for all peers; the first datagram from a peer (IP and port, as with
//     identifyBy: Address) gets the greeting datagram before its reply; peers are remembered.
const maxInput = 1024

// The replies as byte slices made once: the baseline allocates nothing per input.
var (
	greetingBytes = []byte(greeting)
	pongBytes     = []byte(pong)
	pingBytes     = []byte("PING")
)

func serveBaselineMain(args []string) error {
	fs := flag.NewFlagSet("serve-baseline", flag.ExitOnError)
	transport := fs.String("transport", "tcp", "tcp or udp")
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	_ = fs.Parse(args)
	raiseFileLimit(0)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	switch *transport {
	case "tcp":
		ln, err := net.Listen("tcp4", *addr)
		if err != nil {
			return err
		}
		fmt.Printf("listening on %s/TCP\n", ln.Addr())
		go func() { <-stop; _ = ln.Close() }()
		return serveTCPBaseline(ln)
	case "udp":
		pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(*addr)))
		if err != nil {
			return err
		}
		fmt.Printf("listening on %s/UDP\n", pc.LocalAddr())
		go func() { <-stop; _ = pc.Close() }()
		return serveUDPBaseline(pc)
	}
	return fmt.Errorf("-transport %q: want tcp or udp", *transport)
}

func serveTCPBaseline(ln net.Listener) error {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			continue
		}
		go handleTCPBaseline(conn)
	}
}

func handleTCPBaseline(conn net.Conn) {
	defer conn.Close()
	if _, err := conn.Write(greetingBytes); err != nil {
		return
	}
	buf := make([]byte, maxInput)
	for {
		n, err := conn.Read(buf)
		if n > 0 && bytes.Contains(buf[:n], pingBytes) {
			if _, err := conn.Write(pongBytes); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func serveUDPBaseline(pc *net.UDPConn) error {
	seen := map[netip.AddrPort]bool{}
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			continue
		}
		if !seen[from] {
			seen[from] = true
			_, _ = pc.WriteToUDPAddrPort(greetingBytes, from)
		}
		if bytes.Contains(buf[:min(n, maxInput)], pingBytes) {
			_, _ = pc.WriteToUDPAddrPort(pongBytes, from)
		}
	}
}
