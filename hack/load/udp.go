package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// runUDP runs c.workers workers, each with its own connected UDP socket (so its own
// conversation on the server, keyed by port). First contact, before the warm-up: PING until a
// PONG comes back, taking the greeting datagram on the way. Then each round trip sends PING
// and waits c.timeout for a PONG; a reply not back in time is counted lost.
func runUDP(c *loadConfig) (*result, error) {
	raddr, err := net.ResolveUDPAddr("udp4", c.addr)
	if err != nil {
		return nil, err
	}
	conns := make([]*net.UDPConn, c.workers)
	defer func() {
		for _, conn := range conns {
			if conn != nil {
				_ = conn.Close()
			}
		}
	}()
	tallies := make([]*tally, c.workers)
	for i := range conns {
		conn, err := net.DialUDP("udp4", nil, raddr)
		if err != nil {
			return nil, err
		}
		conns[i] = conn
		t := &tally{lat: make([]time.Duration, 0, 1<<16)}
		tallies[i] = t
		if err := udpFirstContact(conn, c.timeout, t); err != nil {
			return nil, fmt.Errorf("worker %d, first contact: %w", i, err)
		}
	}
	w := newWindow(c.warmup, c.duration)
	var wg sync.WaitGroup
	for i, conn := range conns {
		wg.Go(func() { udpWorker(conn, w, c.timeout, tallies[i]) })
	}
	wg.Wait()
	return merge("udp", w, tallies), nil
}

func udpFirstContact(conn *net.UDPConn, timeout time.Duration, t *tally) error {
	buf := make([]byte, 2048)
	for range 10 {
		t.total++
		if _, err := conn.Write([]byte(ping)); err != nil {
			return err
		}
		deadline := time.Now().Add(max(timeout, time.Second))
		for {
			_ = conn.SetReadDeadline(deadline)
			n, err := conn.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break // send again
			}
			if err != nil {
				return err
			}
			switch string(buf[:n]) {
			case greeting:
				t.greeted++
				continue
			case pong:
				return nil
			}
			return fmt.Errorf("unexpected datagram %q", buf[:n])
		}
	}
	return errors.New("no PONG after 10 tries")
}

func udpWorker(conn *net.UDPConn, w window, timeout time.Duration, t *tally) {
	buf := make([]byte, 2048)
	req := []byte(ping)
	for {
		t0 := time.Now()
		if !t0.Before(w.end) {
			return
		}
		t.total++
		if _, err := conn.Write(req); err != nil {
			t.fail(err)
			time.Sleep(time.Millisecond)
			continue
		}
		_ = conn.SetReadDeadline(t0.Add(timeout))
		got := false
		for !got {
			n, err := conn.Read(buf)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.lost++
				} else {
					t.fail(err)
				}
				break
			}
			// A PONG is the answer (a late one from a lost round trip answers this one: the
			// count of round trips is what matters); a late greeting is skipped.
			got = string(buf[:n]) == pong
			if string(buf[:n]) == greeting {
				t.greeted++
			}
		}
		if got && !t0.Before(w.start) {
			t.ops++
			t.lat = append(t.lat, time.Since(t0))
		}
	}
}
