package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// expect reads exactly len(want) bytes from conn and checks them.
func expect(conn net.Conn, buf []byte, want string) error {
	buf = buf[:len(want)]
	if _, err := io.ReadFull(conn, buf); err != nil {
		return err
	}
	if !bytes.Equal(buf, []byte(want)) {
		return fmt.Errorf("got %q, want %q", buf, want)
	}
	return nil
}

// runPersistent keeps c.conns connections open; each reads the greeting, then loops
// PING/PONG. Connections are opened and greeted before the warm-up starts.
func runPersistent(c *loadConfig) (*result, error) {
	conns := make([]net.Conn, c.conns)
	defer func() {
		for _, conn := range conns {
			if conn != nil {
				_ = conn.Close()
			}
		}
	}()
	buf := make([]byte, 64)
	for i := range conns {
		conn, err := net.DialTimeout("tcp", c.addr, c.timeout)
		if err != nil {
			return nil, fmt.Errorf("dial %d: %w", i, err)
		}
		conns[i] = conn
		_ = conn.SetReadDeadline(time.Now().Add(c.timeout))
		if err := expect(conn, buf, greeting); err != nil {
			return nil, fmt.Errorf("greeting on connection %d: %w", i, err)
		}
		_ = conn.SetReadDeadline(time.Time{})
	}
	w := newWindow(c.warmup, c.duration)
	tallies := make([]*tally, len(conns))
	var wg sync.WaitGroup
	for i, conn := range conns {
		t := &tally{greeted: 1, lat: make([]time.Duration, 0, 1<<16)}
		tallies[i] = t
		wg.Go(func() { persistentWorker(conn, w, c.timeout, t) })
	}
	wg.Wait()
	return merge("persistent", w, tallies), nil
}

func persistentWorker(conn net.Conn, w window, timeout time.Duration, t *tally) {
	buf := make([]byte, 64)
	req := []byte(ping)
	// A deadline far enough ahead to cover the run, set once: no timer work per round trip.
	_ = conn.SetDeadline(w.end.Add(timeout))
	for {
		t0 := time.Now()
		if !t0.Before(w.end) {
			return
		}
		t.total++
		if _, err := conn.Write(req); err != nil {
			t.fail(err)
			return
		}
		if err := expect(conn, buf, pong); err != nil {
			t.fail(err)
			return
		}
		if !t0.Before(w.start) {
			t.ops++
			t.lat = append(t.lat, time.Since(t0))
		}
	}
}

// runCPR runs c.workers workers that each loop: connect, read the greeting, PING/PONG,
// close. With -close rst the client closes with SO_LINGER 0, so no socket lingers in
// TIME_WAIT and 60 s of connections cannot exhaust loopback's ephemeral ports.
func runCPR(c *loadConfig) (*result, error) {
	if c.closeHow != "rst" && c.closeHow != "fin" {
		return nil, fmt.Errorf("-close %q: want rst or fin", c.closeHow)
	}
	// Fail fast when nothing listens.
	probe, err := net.DialTimeout("tcp", c.addr, c.timeout)
	if err != nil {
		return nil, err
	}
	if tc, ok := probe.(*net.TCPConn); ok && c.closeHow == "rst" {
		_ = tc.SetLinger(0)
	}
	_ = probe.Close()

	w := newWindow(c.warmup, c.duration)
	tallies := make([]*tally, c.workers)
	var wg sync.WaitGroup
	for i := range tallies {
		t := &tally{lat: make([]time.Duration, 0, 1<<14)}
		tallies[i] = t
		wg.Go(func() { cprWorker(c, w, t) })
	}
	wg.Wait()
	return merge("cpr", w, tallies), nil
}

func cprWorker(c *loadConfig, w window, t *tally) {
	buf := make([]byte, 64)
	req := []byte(ping)
	d := net.Dialer{Timeout: c.timeout}
	for {
		t0 := time.Now()
		if !t0.Before(w.end) {
			return
		}
		t.total++
		connect, err := cprOnce(&d, c, buf, req)
		if !t0.Before(w.start) {
			t.connect(connect)
		}
		if err != nil {
			t.fail(err)
			time.Sleep(time.Millisecond) // no spinning on a refusing server
			continue
		}
		t.greeted++
		if !t0.Before(w.start) {
			t.ops++
			t.lat = append(t.lat, time.Since(t0))
		}
	}
}

// cprOnce runs one request on a connection of its own and returns how long the connect
// took (a SYN the server's full listen queue dropped is retried by the kernel after a
// second: that shows here).
func cprOnce(d *net.Dialer, c *loadConfig, buf, req []byte) (time.Duration, error) {
	t0 := time.Now()
	conn, err := d.Dial("tcp", c.addr)
	connect := time.Since(t0)
	if err != nil {
		return connect, err
	}
	tc := conn.(*net.TCPConn)
	if c.closeHow == "rst" {
		_ = tc.SetLinger(0)
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(c.timeout))
	if err := expect(tc, buf, greeting); err != nil {
		return connect, fmt.Errorf("greeting: %w", err)
	}
	if _, err := tc.Write(req); err != nil {
		return connect, err
	}
	if err := expect(tc, buf, pong); err != nil {
		return connect, fmt.Errorf("pong: %w", err)
	}
	return connect, nil
}
