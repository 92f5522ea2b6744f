package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// runIdle opens c.conns connections (each reads its greeting), holds them for c.hold and
// reads the server's VmRSS before opening, once all are open, and at the end of the hold,
// and its CPU time over the hold. KiB per connection is (end - before) / connections. With
// c.answer, every held connection then sends PING and must read PONG: the server still
// serves each. Connections come from c.sources addresses 127.0.0.1, .2, ...: loopback has
// about 28,000 ephemeral ports for one source and destination.
func runIdle(c *loadConfig) (*result, error) {
	if lim := fileLimit(); lim > 0 && uint64(c.conns)+64 > lim {
		return nil, fmt.Errorf("-conns %d: RLIMIT_NOFILE is %d here", c.conns, lim)
	}
	sources := max(c.sources, 1)
	if perSource := (c.conns + sources - 1) / sources; perSource > 25000 {
		return nil, fmt.Errorf("-conns %d from %d source addresses: %d each, over the ~28,000 ephemeral ports of one; raise -sources", c.conns, sources, perSource)
	}
	r := &result{Mode: "idle"}
	if c.pid > 0 {
		rss, err := vmRSS(c.pid)
		if err != nil {
			return nil, err
		}
		r.RSSStart = rss
	}
	conns := make([]net.Conn, c.conns)
	defer func() {
		for _, conn := range conns {
			if conn != nil {
				_ = conn.Close()
			}
		}
	}()
	var next, greeted, errs atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		errs.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	var wg sync.WaitGroup
	for range max(c.dialers, 1) {
		wg.Go(func() {
			buf := make([]byte, 64)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(conns) {
					return
				}
				d := net.Dialer{Timeout: c.timeout}
				if sources > 1 {
					d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%sources))}
				}
				conn, err := d.Dial("tcp", c.addr)
				if err == nil {
					conns[i] = conn
					_ = conn.SetReadDeadline(time.Now().Add(c.timeout))
					err = expect(conn, buf, greeting)
					_ = conn.SetReadDeadline(time.Time{})
				}
				if err != nil {
					fail(err)
					continue
				}
				greeted.Add(1)
			}
		})
	}
	wg.Wait()
	r.Conns, r.Greeted = int(greeted.Load()), greeted.Load()
	r.Total = int64(c.conns)
	var cpu0 time.Duration
	if c.pid > 0 {
		time.Sleep(time.Second) // let the server finish its bookkeeping of the last ones
		r.RSSOpen, _ = vmRSS(c.pid)
		cpu0, _ = cpuTime(c.pid)
	}
	time.Sleep(c.hold)
	if c.pid > 0 {
		rss, err := vmRSS(c.pid)
		if err != nil {
			return nil, err
		}
		cpu1, _ := cpuTime(c.pid)
		r.RSSEnd, r.HoldCPU, r.Held = rss, cpu1-cpu0, c.hold
		if r.Conns > 0 {
			r.KiBConn = float64(r.RSSEnd-r.RSSStart) / float64(r.Conns)
		}
	}
	if c.answer {
		r.Answered = answerAll(conns, c, fail)
		r.Total += r.Answered // one Input activity each
	}
	r.Errors = errs.Load()
	if s, ok := firstErr.Load().(string); ok {
		r.FirstErr = s
	}
	return r, nil
}

// answerAll sends PING on every held connection and reads PONG, with c.dialers at a time,
// and counts the answered.
func answerAll(conns []net.Conn, c *loadConfig, fail func(error)) int64 {
	var next, answered atomic.Int64
	var wg sync.WaitGroup
	for range max(c.dialers, 1) {
		wg.Go(func() {
			buf := make([]byte, 64)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(conns) {
					return
				}
				conn := conns[i]
				if conn == nil {
					continue
				}
				_ = conn.SetDeadline(time.Now().Add(c.timeout))
				_, err := conn.Write([]byte(ping))
				if err == nil {
					err = expect(conn, buf, pong)
				}
				if err != nil {
					fail(fmt.Errorf("answer: %w", err))
					continue
				}
				answered.Add(1)
			}
		})
	}
	wg.Wait()
	return answered.Load()
}

// vmRSS is a process's resident set size in KiB.
func vmRSS(pid int) (int64, error) {
	return procStatusField(pid, "VmRSS:")
}

func procStatusField(pid int, name string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			return strconv.ParseInt(fields[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, name)
}

// cpuTime is the user+system CPU time a process has used so far (clock ticks of 10 ms).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(fields[11], 10, 64)
	st, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks, nil
}

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard one (Go does it at start-up since
// 1.19; this keeps it explicit), and both to at least need when the process may (root, or
// CAP_SYS_RESOURCE, up to fs.nr_open). The servers compare starts inherit the limit.
func raiseFileLimit(need uint64) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	if l.Max < need {
		raised := syscall.Rlimit{Cur: need, Max: need}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			return
		}
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func fileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	return l.Cur
}
