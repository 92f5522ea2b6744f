// Command load is Parley's load tool: a bare Go server of the same shape as the benchmark
// rules (the baseline), load generators for persistent TCP round trips, connect-per-request,
// UDP request/response and idle connections, and a compare mode that runs each generator
// against the baseline and against `parley run` and prints the ratios.
//
//	go run ./hack/load serve-baseline -transport tcp -addr 127.0.0.1:0
//	go run ./hack/load persistent -addr 127.0.0.1:PORT -conns 16 -duration 10s
//	go run ./hack/load cpr        -addr 127.0.0.1:PORT -workers 16 -duration 10s
//	go run ./hack/load udp        -addr 127.0.0.1:PORT -workers 16 -duration 10s
//	go run ./hack/load idle       -addr 127.0.0.1:PORT -conns 10000 -hold 10s -pid PID [-sources 5 -answer]
//	go run ./hack/load compare    -parley /tmp/parley -modes all -activities on,off
//	go run ./hack/load compare    -parley /tmp/parley -modes idle100k,timers -activities on
//
// The protocol is the one of hack/load/bench-rules.yaml: on connect (TCP) or before its first
// reply to a peer (UDP) the server sends "+OK ready\r\n"; every input containing PING is
// answered "+PONG\r\n". Standard library only.
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// The wire protocol of the benchmark rules.
const (
	greeting = "+OK ready\r\n"
	ping     = "PING\r\n"
	pong     = "+PONG\r\n"
)

const usage = `usage: load <mode> [flags]

modes:
  serve-baseline  bare Go server of the benchmark's shape (-transport tcp|udp -addr)
  persistent      round trips over persistent TCP connections (-addr -conns -duration)
  cpr             connect, greeting, PING/PONG, close, repeated (-addr -workers -duration -close)
  udp             PING/PONG datagrams, one socket per worker (-addr -workers -duration)
  idle            open and hold connections, report server memory per connection and CPU over the hold
                  (-addr -conns -hold -pid; -sources N dials from 127.0.0.1 to .N, -answer PINGs each after)
  compare         run modes against the baseline and against parley run, print ratios (-parley ...);
                  modes persistent, latency, cpr, udp, idle ("all"), and idle100k, timers (scale)

Run "load <mode> -h" for a mode's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	mode, args := os.Args[1], os.Args[2:]
	var err error
	switch mode {
	case "serve-baseline":
		err = serveBaselineMain(args)
	case "persistent", "cpr", "udp", "idle":
		err = clientMain(mode, args)
	case "compare":
		err = compareMain(args)
	case "-h", "-help", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "load: unknown mode %q\n\n%s", mode, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

// loadConfig holds the flags of the client modes.
type loadConfig struct {
	addr     string
	conns    int           // persistent, idle
	workers  int           // cpr, udp
	duration time.Duration // persistent, cpr, udp
	warmup   time.Duration // excluded from the figures
	closeHow string        // cpr: rst or fin
	timeout  time.Duration // udp: reply timeout; tcp: i/o timeout
	hold     time.Duration // idle
	pid      int           // idle
	dialers  int           // idle: concurrent dials
	sources  int           // idle: source addresses 127.0.0.1, .2, ...
	answer   bool          // idle: PING/PONG on every held connection after the hold
}

func (c *loadConfig) register(fs *flag.FlagSet, mode string) {
	fs.StringVar(&c.addr, "addr", "", "server address host:port (required)")
	switch mode {
	case "persistent":
		fs.IntVar(&c.conns, "conns", 16, "persistent connections")
	case "idle":
		fs.IntVar(&c.conns, "conns", 10000, "connections to open and hold")
		fs.DurationVar(&c.hold, "hold", 10*time.Second, "how long to hold them open")
		fs.IntVar(&c.pid, "pid", 0, "server process id, whose VmRSS is read from /proc/PID/status (0: no memory figure)")
		fs.IntVar(&c.dialers, "dialers", 64, "concurrent dials while opening (and answers with -answer)")
		fs.IntVar(&c.sources, "sources", 1, "source addresses 127.0.0.1 to 127.0.0.N to dial from (loopback has ~28,000 ephemeral ports per source and destination)")
		fs.BoolVar(&c.answer, "answer", false, "after the hold, send PING on every held connection and read PONG")
	case "cpr":
		fs.IntVar(&c.workers, "workers", 16, "concurrent workers")
		fs.StringVar(&c.closeHow, "close", "rst", "how the client closes: rst (SO_LINGER 0: no TIME_WAIT, the server reads ECONNRESET) or fin (graceful; relies on net.ipv4.tcp_tw_reuse for loopback)")
	case "udp":
		fs.IntVar(&c.workers, "workers", 16, "concurrent workers, one socket each")
	}
	if mode != "idle" {
		fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured time")
		fs.DurationVar(&c.warmup, "warmup", time.Second, "load before the measured time, not counted")
	}
	def := 5 * time.Second
	if mode == "udp" {
		def = 200 * time.Millisecond
	}
	fs.DurationVar(&c.timeout, "timeout", def, "i/o timeout (udp: a reply not back within it counts as lost)")
}

func clientMain(mode string, args []string) error {
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	var c loadConfig
	c.register(fs, mode)
	_ = fs.Parse(args)
	if c.addr == "" {
		return fmt.Errorf("%s: -addr is required", mode)
	}
	raiseFileLimit(uint64(c.conns) + 1024)
	r, err := runMode(mode, &c)
	if err != nil {
		return err
	}
	fmt.Println(r.String())
	return nil
}

func runMode(mode string, c *loadConfig) (*result, error) {
	switch mode {
	case "persistent":
		return runPersistent(c)
	case "cpr":
		return runCPR(c)
	case "udp":
		return runUDP(c)
	case "idle":
		return runIdle(c)
	}
	return nil, fmt.Errorf("unknown mode %q", mode)
}

// result is what one client run measured.
type result struct {
	Mode     string
	Ops      int64         // completed operations in the measured window
	Elapsed  time.Duration // measured window
	Total    int64         // requests sent in all, warm-up included (for the activity count)
	Errors   int64
	Lost     int64 // udp: replies not back in time
	Greeted  int64 // greetings received
	Lat      []time.Duration
	Conns    int           // idle: connections held
	RSSStart int64         // idle: server VmRSS before opening, KiB
	RSSOpen  int64         // idle: after opening
	RSSEnd   int64         // idle: at the end of the hold
	KiBConn  float64       // idle: (RSSEnd-RSSStart)/Conns
	HoldCPU  time.Duration // idle: server CPU time (utime+stime) over the hold
	Held     time.Duration // idle: the hold
	Answered int64         // idle -answer: held connections that answered PING
	// cpr: the slowest connect in the measured window, and the connects slower than
	// slowConnect.
	MaxConnect   time.Duration
	SlowConnects int64
	FirstErr     string
}

func (r *result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

func (r *result) Percentile(p float64) time.Duration {
	if len(r.Lat) == 0 {
		return 0
	}
	if !slices.IsSorted(r.Lat) {
		slices.Sort(r.Lat)
	}
	i := int(p / 100 * float64(len(r.Lat)-1))
	return r.Lat[i]
}

func (r *result) String() string {
	var b strings.Builder
	if idleMode(r.Mode) {
		fmt.Fprintf(&b, "idle: conns=%d greeted=%d errors=%d", r.Conns, r.Greeted, r.Errors)
		if r.RSSStart > 0 {
			fmt.Fprintf(&b, " server VmRSS KiB: before=%d opened=%d held=%d => %.2f KiB/conn; server CPU over the %s hold: %s",
				r.RSSStart, r.RSSOpen, r.RSSEnd, r.KiBConn, r.Held, r.HoldCPU)
		}
		if r.Answered > 0 {
			fmt.Fprintf(&b, " answered=%d", r.Answered)
		}
	} else {
		fmt.Fprintf(&b, "%s: ops=%d in %.2fs => %.0f/s p50=%s p99=%s errors=%d",
			r.Mode, r.Ops, r.Elapsed.Seconds(), r.Rate(), us(r.Percentile(50)), us(r.Percentile(99)), r.Errors)
		if r.Mode == "udp" {
			fmt.Fprintf(&b, " lost=%d", r.Lost)
		}
		if r.Mode == "cpr" {
			fmt.Fprintf(&b, " slowest connect=%s over %s: %d", us(r.MaxConnect), slowConnect, r.SlowConnects)
		}
		fmt.Fprintf(&b, " (sent in all, warm-up included: %d)", r.Total)
	}
	if r.FirstErr != "" {
		fmt.Fprintf(&b, " first error: %s", r.FirstErr)
	}
	return b.String()
}

func us(d time.Duration) string {
	return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
}

// window is the measured part of a run: after the warm-up, until the end.
type window struct{ start, end time.Time }

func newWindow(warmup, duration time.Duration) window {
	start := time.Now().Add(warmup)
	return window{start: start, end: start.Add(duration)}
}

// tally is one worker's counts, merged at the end without locks.
type tally struct {
	ops, total, errors, lost, greeted int64
	lat                               []time.Duration
	firstErr                          error
	// cpr: the slowest connect in the measured window, and how many took over slowConnect.
	maxConnect   time.Duration
	slowConnects int64
}

// slowConnect is the connect time cpr counts as slow: a SYN dropped from a full listen
// queue is retried after a second, so any connect past it is one the server lost at first.
const slowConnect = 100 * time.Millisecond

func (t *tally) connect(d time.Duration) {
	t.maxConnect = max(t.maxConnect, d)
	if d > slowConnect {
		t.slowConnects++
	}
}

func (t *tally) fail(err error) {
	t.errors++
	if t.firstErr == nil {
		t.firstErr = err
	}
}

func merge(mode string, w window, ts []*tally) *result {
	r := &result{Mode: mode, Elapsed: w.end.Sub(w.start)}
	for _, t := range ts {
		r.Ops += t.ops
		r.Total += t.total
		r.Errors += t.errors
		r.Lost += t.lost
		r.Greeted += t.greeted
		r.MaxConnect = max(r.MaxConnect, t.maxConnect)
		r.SlowConnects += t.slowConnects
		r.Lat = append(r.Lat, t.lat...)
		if r.FirstErr == "" && t.firstErr != nil {
			r.FirstErr = t.firstErr.Error()
		}
	}
	return r
}
