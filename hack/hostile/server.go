package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// server is one `parley run`, its JSON activities read as they come.
type server struct {
	cmd     *exec.Cmd
	command string
	addr    chan string // the listening address, from ConnectorStarted
	stderr  bytes.Buffer
	waited  chan error
	counts  *activityCounts
	read    chan struct{} // closed once stdout is read to its end

	stopOnce sync.Once
	stopErr  error
}

// startServer starts `parley run` on rulesFile with -o json, reading its activities.
func startServer(c config, rulesFile string, extra ...string) (*server, string, error) {
	args := append([]string{"run", "-f", rulesFile, "--ip", "127.0.0.1", "--port", "0", "-o", "json"}, extra...)
	s := &server{
		cmd: exec.Command(c.parley, args...), command: "parley " + strings.Join(args, " "),
		addr: make(chan string, 1), waited: make(chan error, 1), counts: newActivityCounts(), read: make(chan struct{}),
	}
	s.cmd.Stderr = &s.stderr
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, "", err
	}
	go func() {
		defer close(s.read)
		s.readActivities(out)
	}()
	go func() {
		<-s.read // Wait closes the pipe: read it all first
		s.waited <- s.cmd.Wait()
	}()
	select {
	case addr := <-s.addr:
		return s, addr, nil
	case err := <-s.waited:
		return nil, "", fmt.Errorf("%s exited (%v): %s", s.command, err, s.stderr.String())
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.waited
		return nil, "", fmt.Errorf("%s: no ConnectorStarted within 30s: %s", s.command, s.stderr.String())
	}
}

// stop interrupts the server, which ends its conversations and writes its last summaries,
// and waits for it.
func (s *server) stop() error {
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.waited:
		case <-time.After(60 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.waited
			s.stopErr = fmt.Errorf("%s did not stop within 60s of SIGINT", s.command)
		}
	})
	return s.stopErr
}

// exitSummary is the server's last words on stderr: its counts and what it dropped.
func (s *server) exitSummary() string {
	var keep []string
	for _, line := range strings.Split(s.stderr.String(), "\n") {
		if strings.Contains(line, "rejected") || strings.Contains(line, "dropped") || strings.Contains(line, "not all printed") {
			keep = append(keep, strings.TrimSpace(strings.TrimPrefix(line, "parley: ")))
		}
	}
	return strings.Join(keep, "; ")
}

// exitCounts are the exact counts of the server's exit summary: activities the JSON output
// missed (dropped at the server's activity bounds) are in them.
var exitCounts = regexp.MustCompile(`(\d+) (conversations? evicted|conversations?|peers? rejected|datagrams? rate-limited|datagrams? dropped by the kernel|activities dropped)`)

// exitTotals is the exit summary's counts that are not zero, in a few words.
func (s *server) exitTotals() string {
	var parts []string
	for _, m := range exitCounts.FindAllStringSubmatch(s.exitSummary(), -1) {
		if m[1] != "0" {
			parts = append(parts, m[1]+" "+m[2])
		}
	}
	return strings.Join(parts, ", ")
}

// readActivities counts the activities by type, and the refusal summaries by reason. An
// activity line may be megabytes (a 1 MiB input, twice): only its head is looked at, as the
// type comes first after the time.
func (s *server) readActivities(r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	var head []byte
	long := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !long {
			head = append(head[:0], chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			long = true
			continue
		}
		if len(head) > 0 {
			s.counts.add(head, long, s.addr)
		}
		long = false
		if err != nil {
			return
		}
	}
}

// activityCounts are what a server recorded, counted.
type activityCounts struct {
	mu      sync.Mutex
	byType  map[string]int
	refused map[string]int // summarised refusals, by reason
}

func newActivityCounts() *activityCounts {
	return &activityCounts{byType: map[string]int{}, refused: map[string]int{}}
}

var (
	typeField = regexp.MustCompile(`"type":"([A-Za-z]+)"`)
	// summary is a refusal summary's message: "N datagrams from M sources refused since the
	// last summary (at most every 10s): reason".
	summary = regexp.MustCompile(`^(\d+) (?:DTLS hellos?|datagrams?)\b.*refused since the last summary \([^)]*\): (.*)$`)
)

// evictedType counts the TimedOut activities of conversations evicted for a new source
// (capacityPolicy EvictIdlest), among all TimedOut.
const evictedType = "TimedOut by EvictIdlest"

func (a *activityCounts) add(line []byte, long bool, addr chan string) {
	var typ, msg string
	if !long {
		var rec struct{ Type, Message string }
		if json.Unmarshal(line, &rec) != nil {
			return
		}
		typ, msg = rec.Type, rec.Message
	} else if m := typeField.FindSubmatch(line); m != nil {
		typ = string(m[1])
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.byType[typ]++
	switch typ {
	case "TimedOut":
		if strings.Contains(msg, "capacityPolicy EvictIdlest") {
			a.byType[evictedType]++
		}
	case "ConnectorStarted":
		if rest, ok := strings.CutPrefix(msg, "listening on "); ok {
			if i := strings.LastIndexByte(rest, '/'); i > 0 {
				select {
				case addr <- rest[:i]:
				default:
				}
			}
		}
	case "Rejected":
		if m := summary.FindStringSubmatch(msg); m != nil {
			n, _ := strconv.Atoi(m[1])
			a.refused[shortReason(m[2])] += n
		} else {
			a.refused["refused one by one"]++
		}
	}
}

// shortReason names a refusal summary's reason in a few words, for the table.
func shortReason(r string) string {
	for _, k := range []struct{ has, short string }{
		{"rate limit", "rate-limited"},
		{"evicted", "evicted"},
		{"cookie never returned", "unverified"},
		{"new sources waiting", "backlog-dropped"},
		{"dropped by the kernel", "kernel-dropped"},
		{"unread datagrams", "buffer-dropped"},
		{"handshakes under way", "over cap"},
		{"maxConnectionsPerPeer", "over per-peer cap"},
		{"maxConcurrentConnections", "over cap"},
		{"paused", "paused"},
	} {
		if strings.Contains(r, k.has) {
			return k.short
		}
	}
	return r
}

// describe is what the server counted: the refusals, the Error and TimedOut activities.
func (a *activityCounts) describe() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var parts []string
	reasons := make([]string, 0, len(a.refused))
	for r := range a.refused {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		parts = append(parts, fmt.Sprintf("%s %d", r, a.refused[r]))
	}
	for _, t := range []string{"Connected", "Input", "Error", "TimedOut", evictedType} {
		if n := a.byType[t]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", t, n))
		}
	}
	return strings.Join(parts, ", ")
}

// rss reads a process's resident memory now (VmRSS) and at its peak so far (VmHWM), in
// bytes.
func rss(pid int) (now, peak int64, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			now = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return now, peak, nil
}
