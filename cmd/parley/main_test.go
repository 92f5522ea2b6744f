package main

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// parleyBinary builds the real binary once per test run.
var parleyBinary string

// processWait bounds each wait on a parley process (a line, a port, a reply, its exit): a
// process started on a loaded machine may take long to do what should happen at once.
const processWait = 30 * time.Second

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "parley-cli")
	if err != nil {
		panic(err)
	}
	parleyBinary = filepath.Join(dir, "parley")
	if out, err := exec.Command("go", "build", "-o", parleyBinary, ".").CombinedOutput(); err != nil {
		panic(string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const validRules = `apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata: {name: pinger}
spec:
  operation: {port: 7000}
  conversation:
    greetings: {value: "+OK ready\r\n"}
    ending: {value: "+OK bye\r\n"}
    rules: [{id: 1, mode: Sync, regex: "PING", response: "+PONG\r\n"}]
---
apiVersion: parley.io/v1alpha1
kind: ExternalConnector
metadata: {name: pinger}
spec: {rules: pinger}
`

func TestCheckValid(t *testing.T) {
	out, err := exec.Command(parleyBinary, "check", "-f", writeFile(t, validRules)).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "pinger: valid (1 rules, Server TCP :7000)") || !strings.Contains(string(out), "(skipped)") {
		t.Errorf("output: %s", out)
	}
}

func TestCheckListsEveryErrorAndExitsNonZero(t *testing.T) {
	bad := `apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata: {name: broken}
spec:
  operation: {port: 0}
  conversation:
    rules:
    - {id: 1, mode: Sync, regex: "(?!x)", trigger: [{ruleID: 42}]}
    - {id: 1, mode: Sync, regex: "y", response: "{{who}}"}
`
	cmd := exec.Command(parleyBinary, "check", "-f", writeFile(t, bad))
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	for _, want := range []string{
		"spec.operation.port: Required value",
		"spec.conversation.rules[0] (id 1).regex", "lookarounds",
		"spec.conversation.rules[0] (id 1).trigger[0].ruleID: Not found: 42",
		"spec.conversation.rules[1] (id 1).id: Duplicate value: 1",
		`spec.conversation.rules[1] (id 1).response: Invalid value: "{{who}}"`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

func TestCheckRejectsUnknownFieldsAndWrongKinds(t *testing.T) {
	for name, content := range map[string]string{
		"unknown field": "apiVersion: parley.io/v1alpha1\nkind: ConversationRules\nspec: {operation: {port: 1, prot: 2}}\n",
		"wrong version": "apiVersion: parley.io/v1\nkind: ConversationRules\nspec: {operation: {port: 1}}\n",
		"nothing":       "apiVersion: v1\nkind: ConfigMap\n",
	} {
		out, err := exec.Command(parleyBinary, "check", "-f", writeFile(t, content)).CombinedOutput()
		if err == nil {
			t.Errorf("%s: accepted:\n%s", name, out)
		}
	}
}

// TestRunJSONAndGracefulInterrupt serves the rules, talks to them, interrupts the process
// and checks the activities it printed: one JSON object per line, with the API's field names.
func TestRunJSONAndGracefulInterrupt(t *testing.T) {
	cmd := exec.Command(parleyBinary, "run", "-f", writeFile(t, validRules), "--port", "0", "--ip", "127.0.0.1", "-o", "json")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stdout)
	next := func() v1alpha1.ActivityRecord {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("no more activities; stderr: %s", stderr.String())
		}
		var a v1alpha1.ActivityRecord
		if err := json.Unmarshal(lines.Bytes(), &a); err != nil {
			t.Fatalf("line %q: %v", lines.Text(), err)
		}
		return a
	}
	started := next()
	addr := strings.TrimSuffix(strings.TrimPrefix(started.Message, "listening on "), "/TCP")
	if started.Type != v1alpha1.ActivityConnectorStarted || started.Connector != "pinger" {
		t.Fatalf("first activity: %+v", started)
	}
	conn, err := net.DialTimeout("tcp", addr, processWait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	line, _ := r.ReadString('\n')
	conn.Write([]byte("PING\r\n"))
	pong, _ := r.ReadString('\n')
	if line != "+OK ready\r\n" || pong != "+PONG\r\n" {
		t.Fatalf("conversation: %q %q", line, pong)
	}
	for _, want := range []v1alpha1.ActivityType{v1alpha1.ActivityConnected, v1alpha1.ActivityGreeted, v1alpha1.ActivityInput} {
		if a := next(); a.Type != want {
			t.Fatalf("got %s, want %s", a.Type, want)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	bye, _ := r.ReadString('\n')
	if bye != "+OK bye\r\n" {
		t.Errorf("on interrupt the peer got %q, want the ending rule", bye)
	}
	if a := next(); a.Type != v1alpha1.ActivityEnded || a.Rules.Basic != "ending" {
		t.Errorf("got %+v", a)
	}
	if a := next(); a.Type != v1alpha1.ActivityConnectorStopped {
		t.Errorf("got %s", a.Type)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v; stderr: %s", err, stderr.String())
	}
}

func TestRunRefusesInvalidRules(t *testing.T) {
	out, err := exec.Command(parleyBinary, "run", "-f", writeFile(t, strings.Replace(validRules, `regex: "PING"`, `regex: "(?<=P)ING"`, 1))).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "spec.conversation.rules[0] (id 1).regex") {
		t.Errorf("err %v, output:\n%s", err, out)
	}
}

func TestRunSkipsDisabledRules(t *testing.T) {
	disabled := strings.Replace(validRules, "spec:\n  operation:", "spec:\n  enabled: false\n  operation:", 1)
	out, err := exec.Command(parleyBinary, "run", "-f", writeFile(t, disabled), "--port", "0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "pinger is disabled (spec.enabled: false), not served") {
		t.Errorf("err %v, output:\n%s", err, out)
	}
}

// TestMakeRunBuildsVisibly: make run says it is building (the first build takes minutes),
// builds the stripped binary make build makes, and runs it rather than go run, whose exit
// status turned Ctrl-C into make's "Error 1".
func TestMakeRunBuildsVisibly(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	out, err := exec.Command("make", "-n", "-C", filepath.Join("..", ".."), "run").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n run: %v\n%s", err, out)
	}
	text := string(out)
	build := strings.Index(text, `go build -trimpath -ldflags "-s -w" -o bin/parley ./cmd/parley`)
	run := strings.Index(text, "bin/parley run")
	if !strings.Contains(text, "building bin/parley") || build < 0 || run < build || strings.Contains(text, "go run") {
		t.Errorf("make run does not build visibly, then run the binary:\n%s", text)
	}
}
