package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/internal/freeport"
)

func pongRules(port int, reply string) string {
	return `apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata: {name: pinger}
spec:
  operation: {ip: 127.0.0.1, port: ` + strconv.Itoa(port) + `, identifyBy: Address}
  conversation:
    rules: [{id: 1, mode: Sync, regex: "PING", response: "` + reply + `\n"}]
`
}

// replaceFile writes content as editors do: a new file renamed over the old one.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestRunReloadsRulesLikeTheCluster: --watch and SIGHUP hand new rules to new
// conversations while live ones keep theirs; what cannot change live, and invalid rules,
// keep the running rules and say why. --log-file keeps every activity as JSON lines.
func TestRunReloadsRulesLikeTheCluster(t *testing.T) {
	dir := t.TempDir()
	rulesPath, logPath := filepath.Join(dir, "rules.yaml"), filepath.Join(dir, "activities.jsonl")
	port := freeport.T(t)
	if err := os.WriteFile(rulesPath, []byte(pongRules(port, "v1")), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr connectortest.Output
	cmd := exec.Command(parleyBinary, "run", rulesPath, "--watch", "--log-file", logPath, "-o", "none")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFor := func(what string, n int) {
		t.Helper()
		deadline := time.Now().Add(processWait)
		for strings.Count(stderr.String(), what) < n {
			if time.Now().After(deadline) {
				t.Fatalf("no %q (x%d) on stderr:\n%s", what, n, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("listening on", 1)
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	ask := func(c net.Conn, r *bufio.Reader) string {
		t.Helper()
		c.SetDeadline(time.Now().Add(processWait))
		if _, err := c.Write([]byte("PING\n")); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reply: %v\n%s", err, stderr.String())
		}
		return strings.TrimSpace(line)
	}
	live, liveR := dial()
	if got := ask(live, liveR); got != "v1" {
		t.Fatalf("first reply %q", got)
	}

	replaceFile(t, rulesPath, pongRules(port, "v2"))
	waitFor("pinger: rules reloaded", 1)
	fresh, freshR := dial()
	if got := ask(fresh, freshR); got != "v2" {
		t.Errorf("a new conversation after the edit got %q, want v2", got)
	}
	if got := ask(live, liveR); got != "v1" {
		t.Errorf("the live conversation got %q, want v1: it finishes on its rules", got)
	}

	// ActivitySinks are built at start: an edit of them is announced, not applied.
	replaceFile(t, rulesPath, pongRules(port, "v2")+`---
apiVersion: v1
kind: Secret
metadata: {name: hook}
stringData: {hmacKey: k}
---
apiVersion: parley.io/v1alpha1
kind: ActivitySink
metadata: {name: hook}
spec:
  webhook: {url: "https://siem.example.org/parley", secretRef: {name: hook}}
`)
	waitFor("the files' ActivitySinks or Secrets changed: restart parley run to apply them", 1)
	if n := strings.Count(stderr.String(), "pinger: rules reloaded"); n != 1 {
		t.Errorf("the rules, unchanged, were reloaded again (%d times)", n)
	}

	replaceFile(t, rulesPath, pongRules(port+1, "v3"))
	waitFor("pinger: operation.port changed: restart parley run to apply it; the running rules stay", 1)

	// SIGHUP reloads too; invalid rules keep the running ones.
	if err := os.WriteFile(rulesPath, []byte(strings.Replace(pongRules(port, "v4"), `regex: "PING"`, `regex: "(PING"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("reload refused, the running rules stay", 1)
	// The files' sinks are back to none, as at start: no second announcement.
	if n := strings.Count(stderr.String(), "ActivitySinks or Secrets changed"); n != 1 {
		t.Errorf("the sinks' change was announced %d times, want once (their removal restored what runs)", n)
	}
	third, thirdR := dial()
	if got := ask(third, thirdR); got != "v2" {
		t.Errorf("after refused reloads a new conversation got %q, want v2", got)
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, stderr.String())
	}
	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	inputs := 0
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var a v1alpha1.ActivityRecord
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if a.Type == v1alpha1.ActivityInput {
			inputs++
		}
	}
	if inputs != 4 {
		t.Errorf("%d Input activities in the log file, want 4:\n%s", inputs, raw)
	}
}

func TestRunWatchNeedsFiles(t *testing.T) {
	out, err := exec.Command(parleyBinary, "run", "--watch").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--watch: the embedded example is not a file") {
		t.Errorf("err %v, output:\n%s", err, out)
	}
}

// metricsURL waits for the line parley run writes to stderr with the address of its
// metrics, and for each of also, and returns the address.
func metricsURL(t *testing.T, stderr *connectortest.Output, also ...string) string {
	t.Helper()
	for deadline := time.Now().Add(processWait); ; time.Sleep(20 * time.Millisecond) {
		out := stderr.String()
		url := ""
		for _, line := range strings.Split(out, "\n") {
			if u, ok := strings.CutPrefix(line, "parley: metrics at "); ok {
				url = u
			}
		}
		if url != "" && !slices.ContainsFunc(also, func(s string) bool { return !strings.Contains(out, s) }) {
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics line, or not all of %q:\n%s", also, out)
		}
	}
}

// TestRunServesTheConnectorMetrics: the same metrics as connector pods, for parley run.
func TestRunServesTheConnectorMetrics(t *testing.T) {
	port := freeport.T(t)
	var stderr connectortest.Output
	cmd := exec.Command(parleyBinary, "run", writeFile(t, pongRules(port, "pong")), "-o", "none", "--metrics-bind-address", "127.0.0.1:0")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	url := metricsURL(t, &stderr, "listening on")
	c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("PING\n"))
	if line, _ := bufio.NewReader(c).ReadString('\n'); line != "pong\n" {
		t.Fatalf("reply %q", line)
	}
	c.Close()
	want := []string{"parley_connector_inputs_total 1", "parley_connector_rules_fired_total 1", "parley_connector_connections_total 1",
		"parley_connector_connections_active ", "parley_connector_activities_produced_total ", "go_goroutines ",
		`parley_connector_dtls_dropped_total{reason="evicted"} 0`, `parley_connector_dtls_dropped_total{reason="socket"} 0`}
	var body string
	for deadline := time.Now().Add(processWait); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		if containsAll(body, want) {
			break
		}
	}
	if !containsAll(body, want) {
		t.Errorf("metrics lack one of %q:\n%s", want, body)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v\n%s", err, stderr.String())
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
