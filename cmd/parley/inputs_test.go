package main

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/connector/metrics"
	"github.com/parley-dev/parley/internal/freeport"
)

// asList is validRules as `kubectl get -o yaml` would print it: one kind: List.
const asList = `apiVersion: v1
kind: List
items:
- apiVersion: parley.io/v1alpha1
  kind: ConversationRules
  metadata: {name: listed}
  spec: {operation: {port: 7001}, conversation: {greetings: {value: "hi\n"}}}
- apiVersion: parley.io/v1alpha1
  kind: ExternalConnector
  metadata: {name: listed}
  spec: {rules: listed}
`

const asJSON = `{"apiVersion": "parley.io/v1alpha1", "kind": "ConversationRules", "metadata": {"name": "json"},
 "spec": {"operation": {"port": 7002}}}`

// TestCheckTakesWhatKubectlApplyTakes: files as arguments or with -f, a directory, standard
// input, kind: List, and JSON.
func TestCheckTakesWhatKubectlApplyTakes(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"a.yaml": validRules, "b.yml": asList, "c.json": asJSON, "notes.txt": "not rules"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "nested"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		stdin   string
		want    []string
		ordered bool
	}{
		{"a file as argument", []string{filepath.Join(dir, "a.yaml")}, "", []string{"a.yaml#1: pinger: valid"}, false},
		{"files as arguments and with -f", []string{filepath.Join(dir, "a.yaml"), "-f", filepath.Join(dir, "c.json")}, "",
			[]string{"a.yaml#1: pinger: valid", "c.json#1: json: valid"}, false},
		{"kind List", []string{filepath.Join(dir, "b.yml")}, "",
			[]string{"b.yml#1/items[0]: listed: valid", `b.yml#1/items[1]: kind "ExternalConnector" is not ConversationRules (skipped)`}, false},
		{"standard input", []string{"-f", "-"}, asList, []string{"<stdin>#1/items[0]: listed: valid"}, false},
		{"a directory: its .yaml, .yml and .json files in name order", []string{dir}, "",
			[]string{"a.yaml#1: pinger: valid", "b.yml#1/items[0]: listed: valid", "c.json#1: json: valid"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(parleyBinary, append([]string{"check"}, tc.args...)...)
			cmd.Stdin = strings.NewReader(tc.stdin)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v:\n%s", err, out)
			}
			last := -1
			for _, want := range tc.want {
				i := strings.Index(string(out), want)
				if i < 0 {
					t.Errorf("missing %q in:\n%s", want, out)
				} else if tc.ordered && i < last {
					t.Errorf("%q out of order in:\n%s", want, out)
				}
				last = i
			}
			if strings.Contains(string(out), "notes.txt") {
				t.Errorf("read a file that is not YAML or JSON:\n%s", out)
			}
		})
	}
	out, err := exec.Command(parleyBinary, "check", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no .yaml, .yml or .json file in the directory") {
		t.Errorf("empty directory: err %v, output:\n%s", err, out)
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(parleyBinary, "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "parley version ") {
		t.Errorf("err %v, output: %s", err, out)
	}
}

func TestRunRefusesAPortOutOfRange(t *testing.T) {
	out, err := exec.Command(parleyBinary, "run", "--port", "70000").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--port 70000: want 0 (any free port) to 65535") {
		t.Errorf("err %v, output:\n%s", err, out)
	}
}

// A port already taken fails with what to do about it, and no invitation to use it first.
func TestRunExplainsAPortInUse(t *testing.T) {
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	out, err := exec.Command(parleyBinary, "run", "--port", port).CombinedOutput()
	if err == nil {
		t.Fatalf("served on a port in use:\n%s", out)
	}
	if !strings.Contains(string(out), "address already in use (another process holds the port") ||
		!strings.Contains(string(out), "--port 0 takes any free port") {
		t.Errorf("no hint in:\n%s", out)
	}
	if strings.Contains(string(out), "try: redis-cli") {
		t.Errorf("invited the user to a port it could not take:\n%s", out)
	}
}

// With -o none no activity says where the connector listens: a line on stderr does.
func TestRunOutputNoneSaysWhereItListens(t *testing.T) {
	cmd := exec.Command(parleyBinary, "run", writeFile(t, validRules), "--port", "0", "--ip", "127.0.0.1", "-o", "none")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string)
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	deadline := time.After(processWait)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("no listening line before the end of stderr")
			}
			addr, found := strings.CutPrefix(line, "parley: pinger listening on ")
			if !found {
				continue
			}
			c, err := net.DialTimeout("tcp", addr, processWait)
			if err != nil {
				t.Fatalf("the line names %s: %v", addr, err)
			}
			c.Close()
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			for range lines {
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("exit: %v", err)
			}
			return
		case <-deadline:
			t.Fatal("no listening line within 10s")
		}
	}
}

// TestRunSeveralConnectorsTable: with several rules files the table names each row's
// connector, and the summary, after the last row, counts conversations, alerts and captures.
func TestRunSeveralConnectorsTable(t *testing.T) {
	rulesOn := func(name string, port int) string {
		return writeFile(t, `apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata: {name: `+name+`}
spec:
  operation: {ip: 127.0.0.1, port: `+strconv.Itoa(port)+`}
  memory: {connection: [{name: user, type: string}]}
  conversation:
    greetings: {value: "hi\n"}
    rules: [{id: 1, mode: Sync, regex: "^AUTH (\\S+)", response: "ok\n", alert: true, captures: [{regex: "^AUTH (\\S+)", variable: user}]}]
`)
	}
	ports := []int{freeport.T(t), freeport.T(t)}
	var out connectortest.Output // stdout and stderr in one, so that their order shows
	cmd := exec.Command(parleyBinary, "run", rulesOn("alpha", ports[0]), rulesOn("beta", ports[1]))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for _, port := range ports {
		var c net.Conn
		deadline := time.Now().Add(processWait)
		for {
			var err error
			if c, err = net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("port %d: %v\n%s", port, err, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		r := bufio.NewReader(c)
		if greeting, _ := r.ReadString('\n'); greeting != "hi\n" {
			t.Fatalf("greeting %q", greeting)
		}
		c.Write([]byte("AUTH root\n"))
		if reply, _ := r.ReadString('\n'); reply != "ok\n" {
			t.Fatalf("reply %q", reply)
		}
		c.Close()
	}
	// Both conversations ended before the interrupt, so the summary has nothing to wait for.
	deadline := time.Now().Add(processWait)
	for strings.Count(out.String(), "Ended ") < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{
		"TIME            TYPE             CONNECTOR        CONN      PEER",
		"Input !          alpha            c-000001",
		"Input !          beta             c-000001",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %q in:\n%s", want, text)
		}
	}
	lastRow := strings.LastIndex(text, "ConnectorStopped")
	for _, name := range []string{"alpha", "beta"} {
		line := "parley: " + name + ": 1 conversation (1 alert, 1 capture), 0 peers rejected, 0 datagrams rate-limited"
		if i := strings.Index(text, line); i < 0 || i < lastRow {
			t.Errorf("summary %q missing or before the last row:\n%s", line, text)
		}
	}
}

// TestSummaryLine: the exit line says what the connector counted, and the conversations
// capacityPolicy EvictIdlest ended for new sources only when there were some.
func TestSummaryLine(t *testing.T) {
	for _, tc := range []struct {
		st   connector.Stats
		t    *tally
		want string
	}{
		{connector.Stats{Total: 3, Rejected: 1}, &tally{alerts: 2, captures: 1},
			"3 conversations (2 alerts, 1 capture), 1 peer rejected, 0 datagrams rate-limited"},
		{connector.Stats{Total: 1001, Rejected: 0, RateLimited: 2, Evicted: 1}, nil,
			"1001 conversations (0 alerts, 0 captures), 0 peers rejected, 2 datagrams rate-limited, 1 conversation evicted"},
		{connector.Stats{Total: 2, UDPSocketDropped: 40}, nil,
			"2 conversations (0 alerts, 0 captures), 0 peers rejected, 0 datagrams rate-limited, 40 datagrams dropped by the kernel (receive buffer full)"},
	} {
		if got := summary(tc.st, tc.t); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}

// TestCheckWarnsOfWhatSilentlyNeverWorks: warnings are marked, do not fail check unless
// --strict; errors come in the spec's order and name each rule's id beside its index.
func TestCheckWarnsOfWhatSilentlyNeverWorks(t *testing.T) {
	warnOnly := writeFile(t, `apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata: {name: Web_Decoy}
spec:
  operation: {port: 8080, encoding: ascii, interactionTimeout: 30s, socket: {closeAfterReplying: true}}
  conversation:
    rules: [{id: 42, mode: Sync, regex: "^GET /café", response: "HTTP/1.0 200 OK\r\n\r\n"}]
---
apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata: {name: other}
spec:
  operation: {port: 8080}
`)
	out, err := exec.Command(parleyBinary, "check", warnOnly).CombinedOutput()
	if err != nil {
		t.Fatalf("warnings failed check: %v\n%s", err, out)
	}
	for _, want := range []string{
		`#1: warning: metadata.name: Invalid value: "Web_Decoy": the cluster refuses it`,
		`Web_Decoy: warning: spec.conversation.rules[0] (id 42).regex: 'é' can never be in an input decoded as ascii`,
		"Web_Decoy: warning: spec.operation.socket.closeAfterReplying: each request comes on a new socket",
		"other: warning: spec.operation.port: 8080/TCP is also where",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if out, err := exec.Command(parleyBinary, "check", "--strict", warnOnly).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "warning(s), and --strict") {
		t.Errorf("--strict: %v\n%s", err, out)
	}

	broken := writeFile(t, `apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata: {name: broken}
spec:
  operation: {port: 1}
  memory: {connection: [{name: num, type: int}]}
  conversation:
    rules:
    - {id: 5, mode: Sync, regex: "a", trigger: [{ruleID: 99}]}
    - {id: 17, mode: Sync, regex: "(", operation: {name: NBR_SUMM, inputs: [num, "1"], outputs: [num]}}
`)
	out, _ = exec.Command(parleyBinary, "check", broken).CombinedOutput()
	text := string(out)
	first := strings.Index(text, "spec.conversation.rules[0] (id 5).trigger[0].ruleID: Not found: 99")
	second := strings.Index(text, "spec.conversation.rules[1] (id 17).regex")
	third := strings.Index(text, `spec.conversation.rules[1] (id 17).operation.name: Invalid value: "NBR_SUMM": unknown operation; did you mean NBR_SUM?`)
	if first < 0 || second < 0 || third < 0 || !(first < second && second < third) {
		t.Errorf("errors missing or out of the spec's order:\n%s", text)
	}
}

// The wrappers around parley run's output forward whether it reads the evidence, so that a
// terminal table or -o none is not sealed for nothing, and a JSON output still is.
func TestRunSinkWrappersForwardWhetherEvidenceIsRead(t *testing.T) {
	m, err := metrics.New(func() metrics.Counters { return metrics.Counters{} })
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		out  activity.Sink
		want bool
	}{
		{activity.DiscardSink{}, false},
		{activity.NewTableSink(io.Discard, activity.TableOptions{}), false},
		{activity.NewCompactJSONSink(io.Discard), true},
	} {
		wrapped := m.Sink(&tallySink{Sink: tc.out, per: map[string]*tally{}})
		if got := activity.ReadsEvidence(wrapped); got != tc.want {
			t.Errorf("%T wrapped: ReadsEvidence %v, want %v", tc.out, got, tc.want)
		}
	}
}

// The exit summary reads a connector's counts while the register may still be writing (a
// stop that gave up waiting for a stalled output): each read holds whole batches, and the
// totals are exact however many goroutines write, new connectors among them.
func TestTallySinkCountsExactlyUnderConcurrentWrites(t *testing.T) {
	const writers, batches = 8, 2000
	ts := &tallySink{Sink: activity.DiscardSink{}, per: map[string]*tally{}}
	two := []v1alpha1.CaptureRecord{{Variable: "user"}, {Variable: "pass"}}
	var wg sync.WaitGroup
	for w := range writers {
		own := "writer-" + strconv.Itoa(w) // a connector only this goroutine writes, new to the map
		wg.Go(func() {
			for range batches {
				// Each batch counts 1 alert and 3 captures for alpha: a read holding part of
				// a batch breaks 3 captures per alert.
				batch := []*v1alpha1.ActivityRecord{
					{Connector: "alpha", Alert: true, Captures: two},
					{Connector: own, Alert: true},
					{Connector: "alpha", Captures: two[:1]},
				}
				if err := ts.Write(batch); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	written := make(chan struct{})
	go func() {
		wg.Wait()
		close(written)
	}()
	reads, last := 0, tally{}
	for done := false; !done; reads++ {
		select {
		case <-written:
			done = true
		default:
		}
		got := ts.of("alpha")
		if got == nil {
			continue // no batch yet
		}
		if got.captures != 3*got.alerts || got.alerts < last.alerts {
			t.Fatalf("read %d: %+v after %+v: part of a batch, or counts gone back", reads, *got, last)
		}
		last = *got
	}
	if got, want := ts.of("alpha"), (tally{alerts: writers * batches, captures: 3 * writers * batches}); got == nil || *got != want {
		t.Errorf("alpha: %+v, want %+v", got, want)
	}
	for w := range writers {
		name := "writer-" + strconv.Itoa(w)
		if got, want := ts.of(name), (tally{alerts: batches}); got == nil || *got != want {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}
	if got := ts.of("nobody"); got != nil {
		t.Errorf("a connector that wrote nothing: %+v", *got)
	}
	t.Logf("%d reads while %d goroutines wrote", reads, writers)
}
