package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The real client runs in a process of its own (this binary, run as `hostile real-client
// KIND ADDR`): a peer on the internet is not scheduled behind the attacker's goroutines, and
// measured from inside the process that floods, its latency would include the flood's own
// scheduling. It makes a request every 50 ms until its standard input closes, and writes a
// line per request: the nanoseconds it took, then "ok" or the error.
const realClientCommand = "real-client"

// realClientMain is the real client's process.
func realClientMain(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: hostile %s KIND ADDR", realClientCommand)
	}
	k, err := strconv.Atoi(args[0])
	if err != nil {
		return fmt.Errorf("kind %q: %w", args[0], err)
	}
	addr := args[1]
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin) // the parent closes it to stop us
		cancel()
	}()
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		d, err := realRequest(kind(k), addr)
		status := "ok"
		if err != nil {
			status = strings.ReplaceAll(err.Error(), "\n", " ")
		}
		fmt.Fprintf(out, "%d %s\n", d.Nanoseconds(), status)
		if err := out.Flush(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// realClient is the parent's handle on a real client process.
type realClient struct {
	cmd   *exec.Cmd
	stop  io.Closer
	lines *bufio.Scanner
}

// startRealClient starts a real client of addr over k.
func startRealClient(k kind, addr string) (*realClient, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, realClientCommand, strconv.Itoa(int(k)), addr)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("real client: %w", err)
	}
	return &realClient{cmd: cmd, stop: stdin, lines: bufio.NewScanner(stdout)}, nil
}

// finish stops the client after its request under way and adds its measures to r: the
// latencies of the requests that succeeded, and the count and last error of those that
// failed.
func (c *realClient) finish(r *result) error {
	_ = c.stop.Close()
	var bad string
	for c.lines.Scan() {
		d, status, ok := strings.Cut(c.lines.Text(), " ")
		ns, err := strconv.ParseInt(d, 10, 64)
		if !ok || err != nil {
			bad = c.lines.Text()
			break
		}
		if status == "ok" {
			r.clientOK++
			r.latencies = append(r.latencies, time.Duration(ns))
		} else {
			r.clientBad++
			r.clientErr = status
		}
	}
	serr := c.lines.Err()
	if bad != "" {
		_ = c.cmd.Process.Kill()
	}
	werr := c.cmd.Wait()
	switch {
	case bad != "":
		return fmt.Errorf("real client said %q", bad)
	case serr != nil:
		return fmt.Errorf("real client's output: %w", serr)
	case werr != nil:
		return fmt.Errorf("real client: %w", werr)
	}
	slices.Sort(r.latencies)
	return nil
}

// quantile is the q-quantile of sorted latencies by nearest rank (the smallest value with
// at least q of them at or under it), 0 for none.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
