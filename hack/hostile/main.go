// Command hostile is Parley's hostile-traffic tool (docs/hardening.md): it starts
// `parley run` on rules of its own, sends it one kind of hostile traffic at a time (a probe),
// and reports, for each probe, the server's resident memory (its peak, and its growth over
// what it held before the probe), the latency of a real client served meanwhile (a full
// connect or handshake, greeting and PING/PONG round trip every 50 ms, from a process of its
// own: p50, p99 and the worst), and what the server counted (refusals and their summaries,
// from its JSON activities, and its exit summary).
//
//	go run ./hack/hostile                       # build parley from the tree, run every probe
//	go run ./hack/hostile -probes stream,dtls   # some of them
//	go run ./hack/hostile -parley bin/parley    # a parley binary built already
//
// Every probe runs a server of its own, so that each peak and growth is the probe's. The
// traffic goes to loopback only: spoofed sources are addresses of 127.0.0.0/8, which any
// socket may bind on Linux. Each probe is bounded in count and time and stops by itself.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The wire protocol of the probes' rules, as hack/load's: a greeting, then PING → PONG.
const (
	greeting = "+OK ready\r\n"
	ping     = "PING\r\n"
	pong     = "+PONG\r\n"
)

// config holds the flags.
type config struct {
	parley   string
	dir      string
	probes   []string
	duration time.Duration // of the time-bound probes
	verbose  bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == realClientCommand {
		if err := realClientMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "hostile:", err)
			os.Exit(1)
		}
		return
	}
	var c config
	var probes string
	flag.StringVar(&c.parley, "parley", "", "parley binary (default: built from this tree into a temporary directory)")
	flag.StringVar(&c.dir, "dir", "", "directory for the rules, keys and binary (default: a temporary one, removed after)")
	flag.StringVar(&probes, "probes", strings.Join(probeNames(), ","), "comma-separated probes: "+strings.Join(probeNames(), ", "))
	flag.DurationVar(&c.duration, "duration", 15*time.Second, "how long the time-bound probes (flood, slowloris, garbage, udp-spoof, tls-stall) send")
	flag.BoolVar(&c.verbose, "v", false, "print each probe's server command and the server's summaries")
	flag.Parse()
	for _, p := range strings.Split(probes, ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.probes = append(c.probes, p)
		}
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	for _, name := range c.probes {
		if probeByName(name) == nil {
			return fmt.Errorf("-probes: unknown probe %q (want %s)", name, strings.Join(probeNames(), ", "))
		}
	}
	if c.dir == "" {
		dir, err := os.MkdirTemp("", "parley-hostile-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		c.dir = dir
	}
	if c.parley == "" {
		c.parley = filepath.Join(c.dir, "parley")
		fmt.Fprintln(os.Stderr, "building parley into", c.parley)
		build := exec.Command("go", "build", "-o", c.parley, "./cmd/parley")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build parley (run from the repository's root, or give -parley): %w", err)
		}
	}
	keys, err := writeKeys(c.dir)
	if err != nil {
		return err
	}
	var results []result
	for _, name := range c.probes {
		p := probeByName(name)
		fmt.Fprintf(os.Stderr, "probe %s: %s\n", p.name, p.what)
		r, err := runProbe(c, keys, p)
		if err != nil {
			return fmt.Errorf("probe %s: %w", p.name, err)
		}
		results = append(results, r)
		fmt.Fprintf(os.Stderr, "  %s\n", r.row())
	}
	printTable(os.Stdout, results)
	return nil
}
