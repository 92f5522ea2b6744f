package main

import (
	"bufio"
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"

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

// parley run --shared-memory keeps shared variables in Redis, under parley::<space>:<name>.
func TestRunSharedMemoryOnRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Password: "pw"})
	srv.CLI("SET", "parley::lab:hits", "41")
	cmd := exec.Command(parleyBinary, "run", "-f", writeFile(t, sharedCounterRules), "--port", "0", "--ip", "127.0.0.1", "-o", "json",
		"--shared-memory", srv.URL())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		t.Fatalf("no activity; stderr: %s", stderr.String())
	}
	var started v1alpha1.ActivityRecord
	if err := json.Unmarshal(lines.Bytes(), &started); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimSuffix(strings.TrimPrefix(started.Message, "listening on "), "/TCP")
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
