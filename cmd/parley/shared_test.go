package main

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/sharedmemory/redistest"
)

const sharedCounterRules = `apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata: {name: counter}
spec:
  operation: {port: 7000, memoryUpdateWhen: Detected}
  memory:
    space: lab
    shared: [{name: hits, type: int, default: "0"}]
  conversation:
    rules: [{id: 1, mode: Sync, regex: "^INC", response: "{{hits}}\n", operation: {name: NBR_SUM, inputs: [hits, "1"], outputs: [hits]}}]
`

// runSharedCounter runs parley run on sharedCounterRules with args (a store), until the
// test ends, and returns the address it listens on and its standard error so far.
func runSharedCounter(t *testing.T, args ...string) (addr string, stderr *strings.Builder) {
	t.Helper()
	cmd := exec.Command(parleyBinary, append([]string{"run", "-f", writeFile(t, sharedCounterRules), "--port", "0",
		"--ip", "127.0.0.1", "-o", "json"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr = &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		t.Fatalf("no activity; stderr: %s", stderr.String())
	}
	var started v1alpha1.ActivityRecord
	if err := json.Unmarshal(lines.Bytes(), &started); err != nil {
		t.Fatal(err)
	}
	go func() { // the rest of the activities: read, so that the output never stalls
		for lines.Scan() {
		}
	}()
	return strings.TrimSuffix(strings.TrimPrefix(started.Message, "listening on "), "/TCP"), stderr
}

// parley run --shared-memory keeps shared variables in Redis, under parley::<space>:<name>.
func TestRunSharedMemoryOnRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Password: "pw"})
	srv.CLI("SET", "parley::lab:hits", "41")
	addr, stderr := runSharedCounter(t, "--shared-memory", srv.URL())
	conn, err := net.DialTimeout("tcp", addr, processWait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = conn.Write([]byte("INC\n"))
	if got, _ := bufio.NewReader(conn).ReadString('\n'); got != "42\n" {
		t.Fatalf("reply %q (KeepExisting keeps the stored 41); stderr: %s", got, stderr.String())
	}
	if got := strings.TrimSpace(srv.CLI("GET", "parley::lab:hits")); got != "42" {
		t.Fatalf("redis holds %q", got)
	}
}

// A store that cannot be used stops parley run at once with what to fix.
func TestRunSharedMemoryErrors(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Password: "pw"})
	rules := writeFile(t, sharedCounterRules)
	for _, c := range []struct{ url, want string }{
		{"mysql://" + srv.Addr(), "--shared-memory: shared memory mysql://" + srv.Addr() + ": redis: invalid URL scheme: mysql"},
		{"redis://:wrong@" + srv.Addr() + "/0", "authentication failed"},
		{"rediss://:pw@" + srv.Addr() + "/0", "TLS mismatch"},
	} {
		out, err := exec.Command(parleyBinary, "run", "-f", rules, "--port", "0", "--shared-memory", c.url).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) || strings.Contains(string(out), ":wrong@") {
			t.Errorf("%s: err %v, output:\n%s", c.url, err, out)
		}
	}
}

// --shared-memory-ca is read again at each new connection to the store: once the store's
// CA is rotated and the file replaced, parley run reconnects against the new CA without a
// restart. Read once at start (the CA as first read), the reconnection would fail its
// verification and the step with it.
func TestRunSharedMemoryCARotatedWithoutARestart(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{TLS: true})
	srv.CLI("SET", "parley::lab:hits", "41")
	caFile := writeFile(t, string(srv.CAPEM))
	addr, stderr := runSharedCounter(t, "--shared-memory", srv.URL(), "--shared-memory-ca", caFile)
	inc := func(wait time.Duration) string {
		t.Helper()
		conn, err := net.DialTimeout("tcp", addr, processWait)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(wait))
		_, _ = conn.Write([]byte("INC\n"))
		got, _ := bufio.NewReader(conn).ReadString('\n')
		return got
	}
	if got := inc(processWait); got != "42\n" {
		t.Fatalf("with the first CA: reply %q; stderr: %s", got, stderr.String())
	}

	srv.RotateCA()
	// Replaced in one rename, as an operator's tooling or the kubelet does.
	next := writeFile(t, string(srv.CAPEM))
	if err := os.Rename(next, caFile); err != nil {
		t.Fatal(err)
	}
	srv.CLI("CLIENT", "KILL", "TYPE", "normal") // parley's connections: it must reconnect
	// The step that finds its pooled connection killed fails (steps are not retried: no
	// reply); the next ones reconnect.
	var got string
	for deadline := time.Now().Add(processWait); got == "" && time.Now().Before(deadline); {
		got = inc(2 * time.Second)
	}
	if got != "43\n" {
		t.Fatalf("after the rotation: reply %q; stderr: %s", got, stderr.String())
	}
	if got := strings.TrimSpace(srv.CLI("GET", "parley::lab:hits")); got != "43" {
		t.Fatalf("redis holds %q", got)
	}
}

// A --shared-memory-ca that holds no certificate stops parley run at start, saying so.
func TestRunSharedMemoryCAUnusable(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{TLS: true})
	bad := writeFile(t, "not a certificate\n")
	out, err := exec.Command(parleyBinary, "run", "-f", writeFile(t, sharedCounterRules), "--port", "0",
		"--shared-memory", srv.URL(), "--shared-memory-ca", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--shared-memory-ca: "+bad+" holds no PEM certificate") {
		t.Errorf("err %v, output:\n%s", err, out)
	}
}
