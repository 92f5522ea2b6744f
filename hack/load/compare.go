package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/parley-dev/parley/internal/freeport"
)

// compare runs each mode against the baseline (this program's serve-baseline, as a
// subprocess) and against `parley run` with activities on (JSON written to a file) and off
// (-o none: recorded and counted, not written), one after the other, and prints a table
// with the ratios.
type compareConfig struct {
	parley, rules, rulesUDP, dir string
	rules100k, rulesTimers       string
	modes, activities            []string
	load                         loadConfig
	cprWorkers, udpWorkers       int
	idleConns                    int
	bigConns, timerConns         int
	timerHold                    time.Duration
	rounds                       int
	settle                       time.Duration
	buffer                       int
	keep                         bool
}

// targets from the performance issue (docs/performance.md): parley/baseline for rates, KiB
// per connection for idle, parley's p50 / the baseline's for latency (at most). The scale
// modes (idle100k, timers) report, with no target in the table.
var targets = map[string]float64{"persistent": 0.95, "cpr": 0.95, "udp": 0.85, "idle": 4.0, "latency": 1.5,
	"idle100k": 0, "timers": 0}

// quickModes are "all": the scale modes take minutes and are asked for by name.
var quickModes = []string{"persistent", "latency", "cpr", "udp", "idle"}

// bytesPerRequest is the goal for the JSON written per request on a live conversation
// (one Input activity): persistent, latency and udp.
const bytesPerRequest = 250

// idleMode says whether a mode holds connections rather than timing requests.
func idleMode(mode string) bool { return mode == "idle" || mode == "idle100k" || mode == "timers" }

func compareMain(args []string) error {
	fs := flag.NewFlagSet("compare", flag.ExitOnError)
	var c compareConfig
	var modes, acts string
	fs.StringVar(&c.parley, "parley", "", "parley binary (required)")
	fs.StringVar(&c.rules, "rules", "hack/load/bench-rules.yaml", "TCP benchmark rules")
	fs.StringVar(&c.rulesUDP, "rules-udp", "hack/load/bench-rules-udp.yaml", "UDP benchmark rules")
	fs.StringVar(&c.rules100k, "rules-100k", "hack/load/bench-rules-100k.yaml", "idle100k: rules with room for the connections")
	fs.StringVar(&c.rulesTimers, "rules-timers", "hack/load/bench-rules-timers.yaml", "timers: rules whose conversations each keep a timer pending")
	fs.StringVar(&c.dir, "dir", os.TempDir(), "directory for the activity files (activities on)")
	fs.StringVar(&modes, "modes", "all", "comma-separated: persistent,latency,cpr,udp,idle (all), idle100k,timers (scale, minutes)")
	fs.StringVar(&acts, "activities", "on,off", "comma-separated: on (JSON to a file), off (-o none)")
	fs.DurationVar(&c.load.duration, "duration", 10*time.Second, "measured time per run")
	fs.DurationVar(&c.load.warmup, "warmup", time.Second, "warm-up per run, not counted")
	fs.IntVar(&c.load.conns, "conns", 16, "persistent: connections")
	fs.IntVar(&c.cprWorkers, "cpr-workers", 16, "cpr: workers")
	fs.StringVar(&c.load.closeHow, "close", "rst", "cpr: rst (SO_LINGER 0) or fin")
	fs.IntVar(&c.udpWorkers, "udp-workers", 16, "udp: workers")
	fs.IntVar(&c.idleConns, "idle-conns", 10000, "idle: connections")
	fs.IntVar(&c.bigConns, "idle100k-conns", 100000, "idle100k: connections, from 127.0.0.1 to .N, 20,000 each, each answering PING after the hold")
	fs.IntVar(&c.timerConns, "timer-conns", 10000, "timers: connections, each with a timer pending, answering PING after the hold")
	fs.DurationVar(&c.timerHold, "timer-hold", 10*time.Second, "timers: hold (the server's CPU over it is reported)")
	fs.DurationVar(&c.load.hold, "hold", 10*time.Second, "idle: hold time")
	fs.IntVar(&c.load.dialers, "dialers", 64, "idle: concurrent dials")
	fs.IntVar(&c.rounds, "rounds", 1, "runs per cell; the median is reported")
	fs.DurationVar(&c.settle, "settle", time.Second, "pause between runs")
	fs.IntVar(&c.buffer, "activity-buffer", 0, "pass --activity-buffer to parley (0: parley's default)")
	fs.BoolVar(&c.keep, "keep", false, "keep the activity files")
	_ = fs.Parse(args)
	if c.parley == "" {
		return errors.New("compare: -parley is required")
	}
	c.modes = splitList(modes)
	if slices.Equal(c.modes, []string{"all"}) {
		c.modes = quickModes
	}
	c.activities = splitList(acts)
	for _, a := range c.activities {
		if a != "on" && a != "off" {
			return fmt.Errorf("-activities %q: want on and/or off", a)
		}
	}
	for _, m := range c.modes {
		if _, ok := targets[m]; !ok {
			return fmt.Errorf("-modes: unknown mode %q", m)
		}
	}
	raiseFileLimit(uint64(max(c.idleConns, c.bigConns, c.timerConns)) + 4096)
	fmt.Fprintf(os.Stderr, "load compare %s\n", strings.Join(args, " "))
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var rows []row
	for _, mode := range c.modes {
		if n := c.connsOf(mode); n > 0 && fileLimit() > 0 && uint64(n)+1024 > fileLimit() {
			return fmt.Errorf("%s: RLIMIT_NOFILE %d is too small for %d connections (as root the tool raises it; else ulimit -Hn)", mode, fileLimit(), c.connsOf(mode))
		}
		cells := map[string][]*run{}
		for round := range c.rounds {
			for _, srv := range append([]string{"baseline"}, c.activities...) {
				if round > 0 || srv != "baseline" || mode != c.modes[0] {
					time.Sleep(c.settle)
				}
				r, err := c.runOne(self, mode, srv)
				if err != nil {
					return fmt.Errorf("%s against %s: %w", mode, label(srv), err)
				}
				fmt.Fprintf(os.Stderr, "   %s\n", r.res)
				if r.check != "" {
					fmt.Fprintf(os.Stderr, "   activities: %s\n", r.check)
				}
				cells[srv] = append(cells[srv], r)
			}
		}
		base := median(mode, cells["baseline"])
		rows = append(rows, row{mode: mode, srv: "baseline", r: base})
		for _, a := range c.activities {
			rows = append(rows, row{mode: mode, srv: a, r: median(mode, cells[a]), base: base, rounds: cells[a], baseRounds: cells["baseline"]})
		}
	}
	printTable(os.Stdout, rows)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func label(srv string) string {
	if srv == "baseline" {
		return "baseline"
	}
	return "parley (activities " + srv + ")"
}

// run is one client run against one server.
type run struct {
	res     *result
	cpuPer  time.Duration // server CPU per request, warm-up included
	written int64         // activity lines (activities on)
	bytes   int64         // activity file size (activities on)
	expect  int64         // activity lines expected from the client's counts
	dropped string        // parley's own report of dropped activities, if any
	check   string
}

func (c *compareConfig) runOne(self, mode, srv string) (*run, error) {
	transport, rules := "tcp", c.rules
	switch mode {
	case "udp":
		transport, rules = "udp", c.rulesUDP
	case "idle100k":
		rules = c.rules100k
	case "timers":
		rules = c.rulesTimers
	}
	var s *server
	var err error
	if srv == "baseline" {
		s, err = startBaseline(self, transport)
	} else {
		s, err = c.startParley(transport, rules, srv == "on")
	}
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "== %s against %s: %s\n", mode, label(srv), s.command)
	defer s.kill()
	lc := c.load
	lc.addr, lc.pid = s.addr, s.pid
	client := mode
	switch mode {
	case "latency":
		client, lc.conns = "persistent", 1
	case "cpr":
		lc.workers = c.cprWorkers
	case "udp":
		lc.workers, lc.timeout = c.udpWorkers, 200*time.Millisecond
	case "idle":
		lc.conns = c.idleConns
	case "idle100k":
		client, lc.conns, lc.answer = "idle", c.bigConns, true
		lc.sources = (c.bigConns + 19999) / 20000
	case "timers":
		client, lc.conns, lc.answer, lc.hold = "idle", c.timerConns, true, c.timerHold
	}
	if lc.timeout == 0 {
		lc.timeout = 5 * time.Second
	}
	if idleMode(mode) {
		lc.timeout = max(lc.timeout, 30*time.Second) // a server accepting 100,000 on a busy machine
	}
	cpu0, _ := cpuTime(s.pid)
	res, err := runMode(client, &lc)
	if err != nil {
		return nil, err
	}
	res.Mode = mode
	cpu1, _ := cpuTime(s.pid)
	r := &run{res: res}
	if res.Total > 0 && !idleMode(mode) {
		r.cpuPer = (cpu1 - cpu0) / time.Duration(res.Total)
	}
	if err := s.stop(); err != nil {
		return nil, err
	}
	if srv != "baseline" {
		r.dropped = s.droppedReport()
		r.expect = expectedActivities(mode, &lc, res)
		if srv == "on" {
			n, types, err := countActivities(s.activityFile)
			if err != nil {
				return nil, err
			}
			r.written = n
			if fi, err := os.Stat(s.activityFile); err == nil {
				r.bytes = fi.Size()
			}
			r.check = fmt.Sprintf("%d lines written, %d expected from the client's counts %v", n, r.expect, types)
			if !c.keep {
				_ = os.Remove(s.activityFile)
			}
		}
		if r.dropped != "" {
			r.check = strings.TrimSpace(r.check + "; parley: " + r.dropped)
		}
	}
	return r, nil
}

// expectedActivities is what parley should have recorded for the client's counts:
// ConnectorStarted and ConnectorStopped, then per conversation Connected, Greeted and
// Ended (or Broken), and one Input per request.
func expectedActivities(mode string, lc *loadConfig, r *result) int64 {
	switch mode {
	case "persistent", "latency":
		return 2 + 3*int64(lc.conns) + r.Total
	case "cpr":
		// +3: the probe connection runCPR opens first (Connected, Greeted, Broken or Ended).
		return 2 + 3 + 4*r.Greeted
	case "udp":
		return 2 + 3*int64(lc.workers) + r.Total
	case "idle", "idle100k", "timers":
		return 2 + 3*int64(r.Conns) + r.Answered
	}
	return 0
}

func countActivities(path string) (int64, map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	types := map[string]int64{}
	var n int64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if i := bytes.Index(line, []byte(`"type":"`)); i >= 0 {
			rest := line[i+8:]
			if j := bytes.IndexByte(rest, '"'); j >= 0 {
				types[string(rest[:j])]++
			}
		}
	}
	return n, types, sc.Err()
}

func median(mode string, runs []*run) *run {
	key := func(r *run) float64 {
		switch {
		case idleMode(mode):
			return r.res.KiBConn
		case mode == "latency":
			return float64(r.res.Percentile(50))
		}
		return r.res.Rate()
	}
	s := slices.Clone(runs)
	slices.SortFunc(s, func(a, b *run) int {
		switch ka, kb := key(a), key(b); {
		case ka < kb:
			return -1
		case ka > kb:
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}

type row struct {
	mode, srv string
	r, base   *run
	// rounds and baseRounds are every round's run of this server and of the baseline, in
	// order: each pair ran in the same round, so their ratios show how far one run moves on
	// this machine beside the medians' ratio.
	rounds, baseRounds []*run
}

// ratioOf is r's figure against the baseline's: rate over rate (throughput modes), p50
// over p50 (latency), KiB per connection over KiB per connection (the idle modes).
func ratioOf(mode string, r, base *run) float64 {
	switch {
	case idleMode(mode):
		return r.res.KiBConn / base.res.KiBConn
	case mode == "latency":
		return float64(r.res.Percentile(50)) / float64(base.res.Percentile(50))
	}
	return r.res.Rate() / base.res.Rate()
}

// roundRatios are the ratios of each round's pair, then the server's CPU per request
// against the baseline's in each pair, steadier than rates when the machine's speed swings
// (not for the idle modes, which serve no requests while measured).
func (x row) roundRatios() string {
	if len(x.rounds) < 2 || len(x.rounds) != len(x.baseRounds) {
		return "-"
	}
	var rates, cpus []string
	for i, r := range x.rounds {
		b := x.baseRounds[i]
		rates = append(rates, fmt.Sprintf("%.2f", ratioOf(x.mode, r, b)))
		if !idleMode(x.mode) && b.cpuPer > 0 {
			cpus = append(cpus, fmt.Sprintf("%.2f", float64(r.cpuPer)/float64(b.cpuPer)))
		}
	}
	s := strings.Join(rates, " ")
	if len(cpus) > 0 {
		s += " (cpu " + strings.Join(cpus, " ") + ")"
	}
	return s
}

func printTable(w *os.File, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MODE\tSERVER\tRESULT\tRATIO\tTARGET\tp50\tp99\tSERVER CPU\tERRORS\tBYTES/REQ\tACTIVITIES WRITTEN/EXPECTED\tROUNDS")
	for _, x := range rows {
		res := x.r.res
		var result, ratio, target, p50, p99, cpu, acts, perReq string
		perReq = "-"
		switch {
		case idleMode(x.mode):
			result = fmt.Sprintf("%.2f KiB/conn", res.KiBConn)
			if x.mode != "idle" {
				result += fmt.Sprintf(" (%d conns, VmRSS %.0f MiB)", res.Conns, float64(res.RSSEnd)/1024)
			}
			if res.Answered > 0 || x.mode != "idle" {
				result += fmt.Sprintf(", %d/%d answered", res.Answered, res.Conns)
			}
			if x.base != nil {
				ratio = fmt.Sprintf("%.2fx", ratioOf(x.mode, x.r, x.base))
				if x.mode == "idle" {
					target = verdict(res.KiBConn <= targets["idle"], fmt.Sprintf("<= %.1f KiB", targets["idle"]))
				} else {
					target = "reported"
				}
			}
			p50, p99 = "-", "-"
			cpu = fmt.Sprintf("%s over the %s hold", res.HoldCPU, res.Held)
		case x.mode == "latency":
			result = fmt.Sprintf("p50 %s", us(res.Percentile(50)))
			if x.base != nil {
				q := ratioOf(x.mode, x.r, x.base)
				ratio = fmt.Sprintf("%.2fx", q)
				target = verdict(q <= targets["latency"], fmt.Sprintf("p50 <= %.1fx", targets["latency"]))
			}
		default:
			result = fmt.Sprintf("%.0f/s", res.Rate())
			if x.mode == "cpr" {
				// The second bar for connect-per-request: no connect lost to a full
				// listen queue.
				result += fmt.Sprintf(", slowest connect %s (%d over %s)", us(res.MaxConnect), res.SlowConnects, slowConnect)
			}
			if x.base != nil {
				q := ratioOf(x.mode, x.r, x.base)
				ratio = fmt.Sprintf("%.2f", q)
				want := fmt.Sprintf(">= %.2f", targets[x.mode])
				ok := q >= targets[x.mode]
				if x.mode == "cpr" {
					want += fmt.Sprintf(", no connect over %s", slowConnect)
					ok = ok && res.SlowConnects == 0
				}
				target = verdict(ok, want)
			}
		}
		if !idleMode(x.mode) {
			p50, p99 = us(res.Percentile(50)), us(res.Percentile(99))
			cpu = fmt.Sprintf("%.1fµs/req", float64(x.r.cpuPer)/float64(time.Microsecond))
			if x.srv == "on" && res.Total > 0 {
				b := float64(x.r.bytes) / float64(res.Total)
				perReq = fmt.Sprintf("%.0f", b)
				if x.mode != "cpr" {
					perReq += " " + verdict(b <= bytesPerRequest, fmt.Sprintf("<= %d", bytesPerRequest))
				}
			}
		}
		errs := strconv.FormatInt(res.Errors, 10)
		if x.mode == "udp" {
			errs += fmt.Sprintf(" lost %d", res.Lost)
		}
		switch {
		case x.srv == "on":
			acts = fmt.Sprintf("%d/%d", x.r.written, x.r.expect)
		case x.srv == "off":
			acts = "(not written)"
		default:
			acts = "-"
		}
		if x.r.dropped != "" {
			acts += " DROPPED: " + x.r.dropped
		}
		rounds := "-"
		if x.base != nil {
			rounds = x.roundRatios()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.mode, label(x.srv), result, ratio, target, p50, p99, cpu, errs, perReq, acts, rounds)
	}
	_ = tw.Flush()
}

// connsOf is how many connections a mode holds at once.
func (c *compareConfig) connsOf(mode string) int {
	switch mode {
	case "idle":
		return c.idleConns
	case "idle100k":
		return c.bigConns
	case "timers":
		return c.timerConns
	}
	return 0
}

func verdict(ok bool, want string) string {
	if ok {
		return "met (" + want + ")"
	}
	return "MISSED (" + want + ")"
}

// server is a server subprocess.
type server struct {
	cmd          *exec.Cmd
	command      string
	addr         string
	pid          int
	activityFile string
	stderr       *syncBuffer
	waited       chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *server) start() error {
	s.stderr = &syncBuffer{}
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.pid = s.cmd.Process.Pid
	s.waited = make(chan error, 1)
	go func() { s.waited <- s.cmd.Wait() }()
	return nil
}

// exited reports an early exit while waiting for the server to listen.
func (s *server) exited() error {
	select {
	case err := <-s.waited:
		s.waited <- err
		return fmt.Errorf("%s exited early (%v): %s", s.command, err, strings.TrimSpace(s.stderr.String()))
	default:
		return nil
	}
}

// stop interrupts the server (parley ends its conversations and flushes its activities) and
// waits for it.
func (s *server) stop() error {
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.waited:
		return nil
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.waited
		return fmt.Errorf("%s did not stop within 60s of SIGINT", s.command)
	}
}

func (s *server) kill() {
	if s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Kill()
	}
}

func (s *server) droppedReport() string {
	for _, line := range strings.Split(s.stderr.String(), "\n") {
		if strings.Contains(line, "activities dropped") || strings.Contains(line, "not all printed") {
			return strings.TrimPrefix(line, "parley: ")
		}
	}
	return ""
}

func startBaseline(self, transport string) (*server, error) {
	cmd := exec.Command(self, "serve-baseline", "-transport", transport, "-addr", "127.0.0.1:0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, command: "load serve-baseline -transport " + transport + " -addr 127.0.0.1:0"}
	if err := s.start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		s.kill()
		return nil, fmt.Errorf("baseline: %v: %s", err, s.stderr.String())
	}
	s.addr, err = listeningAddr(line)
	if err != nil {
		s.kill()
		return nil, err
	}
	return s, nil
}

// listeningAddr parses "listening on ADDR/TCP" (or /UDP).
func listeningAddr(msg string) (string, error) {
	msg = strings.TrimSpace(msg)
	rest, ok := strings.CutPrefix(msg, "listening on ")
	if i := strings.LastIndexByte(rest, '/'); ok && i > 0 {
		return rest[:i], nil
	}
	return "", fmt.Errorf("not a listening message: %q", msg)
}

// startParley starts `parley run`. Activities on: JSON to a file, the address learned from
// its first line (ConnectorStarted, "listening on ADDR/TCP"). Off: -o none, on a port picked
// here and waited for in /proc/net.
func (c *compareConfig) startParley(transport, rules string, activities bool) (*server, error) {
	output := "none"
	if activities {
		output = "json"
	}
	args := []string{"run", "-f", rules, "-o", output}
	if transport == "udp" {
		args = append(args, "--udp-peer-rate", "0")
	}
	if c.buffer > 0 {
		args = append(args, "--activity-buffer", strconv.Itoa(c.buffer))
	}
	s := &server{}
	port := 0
	var file *os.File
	if activities {
		var err error
		file, err = os.CreateTemp(c.dir, "parley-activities-*.json")
		if err != nil {
			return nil, err
		}
		defer file.Close()
		s.activityFile = file.Name()
		args = append(args, "--port", "0")
	} else {
		var err error
		if port, err = freeport.Pick(); err != nil {
			return nil, err
		}
		args = append(args, "--port", strconv.Itoa(port))
	}
	s.cmd = exec.Command(c.parley, args...)
	s.command = "parley " + strings.Join(args, " ")
	if activities {
		s.cmd.Stdout = file
		s.command += " > " + filepath.Base(s.activityFile)
	} else {
		s.command += " > /dev/null"
	}
	if err := s.start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := s.exited(); err != nil {
			return nil, err
		}
		if activities {
			if addr, ok := firstLineAddr(s.activityFile); ok {
				s.addr = addr
				return s, nil
			}
		} else if listening(transport, port) {
			s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			return s, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.kill()
	return nil, fmt.Errorf("%s: not listening after 10s: %s", s.command, s.stderr.String())
}

func firstLineAddr(path string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadBytes('\n')
	if err != nil {
		return "", false
	}
	var a struct{ Type, Message string }
	if json.Unmarshal(line, &a) != nil || a.Type != "ConnectorStarted" {
		return "", false
	}
	addr, err := listeningAddr(a.Message)
	return addr, err == nil
}

// listening looks for a socket bound to 127.0.0.1:port in /proc/net/tcp (in LISTEN state)
// or /proc/net/udp, without connecting to it.
func listening(transport string, port int) bool {
	b, err := os.ReadFile("/proc/net/" + transport)
	if err != nil {
		return false
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[1] != local {
			continue
		}
		if transport == "udp" || f[3] == "0A" {
			return true
		}
	}
	return false
}
