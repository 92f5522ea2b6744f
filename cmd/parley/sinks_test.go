package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/freeport"
	"github.com/parley-dev/parley/internal/rulesfile"
	"github.com/parley-dev/parley/sink"
)

// hook is a real HTTP server receiving a JSON webhook: it checks each body's signature with
// key and keeps the activities by key.
type hook struct {
	t   *testing.T
	key string
	mu  sync.Mutex
	got map[string]v1alpha1.ActivityRecord
	bad int
	// bodies are the accepted bodies, in order.
	bodies [][]byte
	srv    *httptest.Server
}

func newHook(t *testing.T, key string) *hook {
	h := &hook{t: t, key: key, got: map[string]v1alpha1.ActivityRecord{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if !hmac.Equal([]byte(r.Header.Get(sink.SignatureHeader)), []byte(sink.Sign([]byte(h.key), body))) {
			h.bad++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var batch struct {
			Activities []struct {
				Metadata struct{ Name string } `json:"metadata"`
				v1alpha1.ActivityRecord
			} `json:"activities"`
		}
		if err := json.Unmarshal(body, &batch); err != nil {
			t.Errorf("body %s: %v", body, err)
		}
		for _, a := range batch.Activities {
			h.got[a.Metadata.Name] = a.ActivityRecord
		}
		h.bodies = append(h.bodies, body)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) received() map[string]v1alpha1.ActivityRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]v1alpha1.ActivityRecord{}
	for k, v := range h.got {
		out[k] = v
	}
	return out
}

const alertingRules = `apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata: {name: pinger, labels: {team: blue}}
spec:
  operation: {port: 7000}
  conversation:
    greetings: {value: "+OK ready\r\n"}
    rules:
    - {id: 1, mode: Sync, regex: "^PING", response: "+PONG\r\n"}
    - {id: 2, mode: Sync, regex: "^AUTH", response: "+OK\r\n", alert: true}
`

// parley run delivers to the ActivitySinks of its files, with the Secrets of its files
// (data and stringData), picked by the rules documents' labels and filtered, each
// activity keyed by connector, chain and sequence number; at the end it delivers what is
// queued and says what each sink did.
func TestRunDeliversToTheActivitySinksOfItsFiles(t *testing.T) {
	all, alerts, red := newHook(t, "k-all"), newHook(t, "k-alerts"), newHook(t, "k-all")
	files := alertingRules + fmt.Sprintf(`---
apiVersion: v1
kind: Secret
metadata: {name: hook}
data: {hmacKey: %s}
---
apiVersion: v1
kind: Secret
metadata: {name: hook2}
stringData: {hmacKey: k-alerts}
---
apiVersion: parley.io/v1alpha1
kind: ActivitySink
metadata: {name: all}
spec:
  connectorSelector: {matchLabels: {team: blue}}
  webhook: {url: %q, secretRef: {name: hook}}
---
apiVersion: parley.io/v1alpha1
kind: ActivitySink
metadata: {name: alerts}
spec:
  filter: {alertsOnly: true}
  webhook: {url: %q, secretRef: {name: hook2}}
---
apiVersion: parley.io/v1alpha1
kind: ActivitySink
metadata: {name: red}
spec:
  connectorSelector: {matchLabels: {team: red}}
  webhook: {url: %q, secretRef: {name: hook}}
`, base64.StdEncoding.EncodeToString([]byte("k-all")), all.srv.URL, alerts.srv.URL, red.srv.URL)

	cmd := exec.Command(parleyBinary, "run", "-f", writeFile(t, files), "--port", "0", "--ip", "127.0.0.1", "-o", "none")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stderr)
	var addr string
	var log []string
	for addr == "" && lines.Scan() {
		log = append(log, lines.Text())
		if _, after, ok := strings.Cut(lines.Text(), "listening on "); ok {
			addr = strings.TrimSuffix(after, "/TCP")
		}
	}
	if addr == "" {
		t.Fatalf("parley run did not serve:\n%s", strings.Join(log, "\n"))
	}
	conn, err := net.DialTimeout("tcp", addr, processWait)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	r.ReadString('\n')
	for _, say := range []string{"PING\r\n", "AUTH admin\r\n"} {
		conn.Write([]byte(say))
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() {
		log = append(log, lines.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("parley run: %v\n%s", err, strings.Join(log, "\n"))
	}
	out := strings.Join(log, "\n")

	// Started, Connected, Greeted, 2 Inputs, Ended, Stopped: all delivered before the exit.
	got := all.received()
	types := map[v1alpha1.ActivityType]int{}
	for key, a := range got {
		types[a.Type]++
		if a.Evidence == nil || key != fmt.Sprintf("pinger-%s-%d", a.Evidence.Chain, a.Evidence.Seq) {
			t.Errorf("key %s for %s %+v", key, a.Type, a.Evidence)
		}
	}
	if len(got) != 7 || types[v1alpha1.ActivityInput] != 2 {
		t.Errorf("the all sink got %d activities %v:\n%s", len(got), types, out)
	}
	alerted := alerts.received()
	if len(alerted) != 1 {
		t.Errorf("the alerts sink got %d activities:\n%s", len(alerted), out)
	}
	for _, a := range alerted {
		if !a.Alert || a.Input == nil || a.Input.Text != "AUTH admin\r\n" {
			t.Errorf("the alerts sink got %+v", a)
		}
	}
	if n := len(red.received()); n != 0 {
		t.Errorf("the red sink got %d activities", n)
	}
	for _, h := range []*hook{all, alerts, red} {
		if h.bad != 0 {
			t.Errorf("%d bodies badly signed", h.bad)
		}
	}
	for _, want := range []string{"sink all: 7 delivered, 0 dropped", "sink alerts: 1 delivered, 0 dropped", "sink red: 0 delivered, 0 dropped"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

// parley run refuses an ActivitySink whose Secret is not in its files, before serving.
func TestRunRefusesAnActivitySinkWithoutItsSecret(t *testing.T) {
	files := alertingRules + `---
apiVersion: parley.io/v1alpha1
kind: ActivitySink
metadata: {name: siem}
spec:
  webhook: {url: "http://127.0.0.1:1/x", secretRef: {name: hook}}
`
	out, err := exec.Command(parleyBinary, "run", "-f", writeFile(t, files), "--port", "0", "-o", "none").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit %v\n%s", err, out)
	}
	if !strings.Contains(string(out), `ActivitySink siem: webhook HMAC key: no Secret "hook"`) || strings.Contains(string(out), "listening") {
		t.Errorf("output:\n%s", out)
	}
}

// parley check validates ActivitySinks: every error with its field path, exit 1; a valid
// one is named with its destination.
func TestCheckValidatesActivitySinks(t *testing.T) {
	files := alertingRules + `---
apiVersion: parley.io/v1alpha1
kind: ActivitySink
metadata: {name: broken}
spec:
  filter: {types: [Inputs]}
  webhook: {url: "ftp://x/y"}
  syslog: {address: "tcp://siem", facility: local9}
---
apiVersion: parley.io/v1alpha1
kind: ActivitySink
metadata: {name: fine}
spec:
  kafka: {brokers: ["kafka:9093"], topic: parley}
`
	out, err := exec.Command(parleyBinary, "check", "-f", writeFile(t, files)).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit %v\n%s", err, out)
	}
	for _, want := range []string{
		`ActivitySink broken: spec: Invalid value: "2 destinations"`,
		`ActivitySink broken: spec.filter.types[0]: Unsupported value: "Inputs"`,
		`ActivitySink broken: spec.webhook.url: Invalid value: "ftp://x/y"`,
		`ActivitySink broken: spec.syslog.address: Invalid value: "tcp://siem"`,
		`ActivitySink broken: spec.syslog.facility: Invalid value: "local9"`,
		`ActivitySink fine: valid (Kafka)`,
		"pinger: valid",
		"1 invalid ActivitySink(s)",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	unknown := "apiVersion: parley.io/v1alpha1\nkind: ActivitySink\nmetadata: {name: x}\nspec: {webhok: {url: http://x}}\n"
	out, err = exec.Command(parleyBinary, "check", "-f", writeFile(t, unknown)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "spec.webhok: unknown field") {
		t.Errorf("unknown field: %v\n%s", err, out)
	}
}

// parley run --sign-key signs what its ActivitySinks deliver too: a JSON webhook's bodies,
// one after the other, verify with parley verify, checkpoint and all; an edited body does
// not. A Slack sink gets no checkpoint.
func TestRunSignsTheOutputOfItsActivitySinks(t *testing.T) {
	dir := t.TempDir()
	private, public := opensslKeyPair(t, dir, "evidence")
	all := newHook(t, "k")
	var slackBodies []string
	var slackMu sync.Mutex
	slack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		slackMu.Lock()
		slackBodies = append(slackBodies, string(body))
		slackMu.Unlock()
	}))
	t.Cleanup(slack.Close)
	files := alertingRules + fmt.Sprintf(`---
apiVersion: v1
kind: Secret
metadata: {name: hook}
stringData: {hmacKey: k}
---
apiVersion: parley.io/v1alpha1
kind: ActivitySink
metadata: {name: all}
spec:
  webhook: {url: %q, secretRef: {name: hook}}
---
apiVersion: parley.io/v1alpha1
kind: ActivitySink
metadata: {name: people}
spec:
  webhook: {url: %q, format: Slack}
`, all.srv.URL, slack.URL)
	cmd := exec.Command(parleyBinary, "run", "-f", writeFile(t, files), "--port", "0", "--ip", "127.0.0.1", "-o", "none", "--sign-key", private)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stderr)
	var addr string
	var log []string
	for addr == "" && lines.Scan() {
		log = append(log, lines.Text())
		if _, after, ok := strings.Cut(lines.Text(), "listening on "); ok {
			addr = strings.TrimSuffix(after, "/TCP")
		}
	}
	if addr == "" {
		t.Fatalf("parley run did not serve:\n%s", strings.Join(log, "\n"))
	}
	conn, err := net.DialTimeout("tcp", addr, processWait)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	r.ReadString('\n')
	for _, say := range []string{"PING\r\n", "AUTH admin\r\n", "PING\r\n"} {
		conn.Write([]byte(say))
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() {
		log = append(log, lines.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("parley run: %v\n%s", err, strings.Join(log, "\n"))
	}
	out := strings.Join(log, "\n")
	if !strings.Contains(out, "sink all: 8 delivered, 0 dropped, 0 failed attempts, 1 checkpoints") ||
		!strings.Contains(out, "sink people: 8 delivered, 0 dropped, 0 failed attempts\n") {
		t.Errorf("summary:\n%s", out)
	}
	all.mu.Lock()
	bodies := append([][]byte(nil), all.bodies...)
	all.mu.Unlock()
	joined := string(bytes.Join(bodies, []byte("\n")))
	if !strings.Contains(joined, `"checkpoints":[{"metadata":{"name":"parley-checkpoint-`) {
		t.Fatalf("no checkpoint delivered:\n%s", joined)
	}
	output := filepath.Join(dir, "webhook.json")
	if err := os.WriteFile(output, []byte(joined), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, code := runVerify(t, public, output); code != 0 || !strings.Contains(got, "records 1-8 (8), 1 checkpoints, signed up to 8") {
		t.Fatalf("the webhook's bodies: exit %d:\n%s", code, got)
	}
	edited := strings.Replace(joined, `"text":"AUTH admin\r\n"`, `"text":"AUTH root\r\n"`, 1)
	if edited == joined {
		t.Fatalf("no AUTH input in:\n%s", joined)
	}
	if err := os.WriteFile(output, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, code := runVerify(t, public, output); code != 1 || !strings.Contains(got, "altered") {
		t.Errorf("an edited body: exit %d:\n%s", code, got)
	}
	slackMu.Lock()
	defer slackMu.Unlock()
	if people := strings.Join(slackBodies, "\n"); strings.Contains(people, "checkpoint") || people == "" {
		t.Errorf("the Slack sink got:\n%s", people)
	}
}

// A webhook receiver that takes the connection and never answers (a SIEM behind a
// stalled proxy) holds its sink's delivery: when the drain's time is up, the stop gives
// up on it at once and says, by number, what it did not deliver.
func TestStopSinksGivesUpOnAReceiverThatNeverAnswers(t *testing.T) {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", freeport.T(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c // read nothing, answer nothing
		}
	}()
	docs := []rulesfile.SinkDocument{{Source: "sinks.yaml", Sink: v1alpha1.ActivitySink{
		ObjectMeta: metav1.ObjectMeta{Name: "siem"},
		Spec:       v1alpha1.ActivitySinkSpec{Webhook: &v1alpha1.WebhookSink{URL: "http://" + l.Addr().String() + "/parley"}},
	}}}
	feed, err := startSinks(docs, nil, map[string]map[string]string{"pinger": nil}, sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var batch []*v1alpha1.ActivityRecord
	for seq := range uint64(3) {
		batch = append(batch, &v1alpha1.ActivityRecord{Connector: "pinger", Type: v1alpha1.ActivityInput,
			Evidence: &v1alpha1.EvidenceRecord{Chain: "c0ffee", Seq: seq + 1}})
	}
	if err := feed.Write(batch); err != nil {
		t.Fatal(err)
	}
	c := <-accepted // the delivery is in flight, and stays so
	defer c.Close()

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the drain's time is up
	var out bytes.Buffer
	stopped := make(chan struct{})
	go func() {
		stopSinks(ctx, &out, feed)
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(20 * time.Second): // generous, and short of the webhook client's own 30 s timeout
		t.Fatal("the stop waits for a receiver that never answers")
	}
	const want = "parley: sink siem: 0 delivered, 0 dropped, 0 failed attempts; 3 not delivered in time\n"
	if out.String() != want {
		t.Errorf("got  %q\nwant %q", out.String(), want)
	}
}

// stuckDestination never finishes a delivery until its sink closes.
type stuckDestination struct{}

func (stuckDestination) Deliver(ctx context.Context, _ []sink.Item) error {
	<-ctx.Done()
	return ctx.Err()
}
func (stuckDestination) Close() error { return nil }

// countingDestination counts what it delivers.
type countingDestination struct{ delivered atomic.Int64 }

func (d *countingDestination) Deliver(_ context.Context, batch []sink.Item) error {
	d.delivered.Add(int64(len(batch)))
	return nil
}
func (d *countingDestination) Close() error { return nil }

// The sinks drain side by side at the end: a receiver that never answers, listed first,
// does not spend the time of a sink listed after it that delivers only once drained (an
// email digest gathering for its interval).
func TestStopSinksDrainsEachSinkInItsOwnRight(t *testing.T) {
	digest := &countingDestination{}
	feed := &sink.Feed{Labels: map[string]map[string]string{"pinger": nil}, Routes: []*sink.Route{
		{Name: "stuck", Selector: labels.Everything(), Sink: sink.New(stuckDestination{}, sink.Options{})},
		{Name: "digest", Selector: labels.Everything(), Sink: sink.New(digest, sink.Options{Linger: time.Hour})},
	}}
	for _, r := range feed.Routes {
		go r.Sink.Run()
	}
	batch := []*v1alpha1.ActivityRecord{{Connector: "pinger", Type: v1alpha1.ActivityInput,
		Evidence: &v1alpha1.EvidenceRecord{Chain: "c0ffee", Seq: 1}}}
	if err := feed.Write(batch); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var out bytes.Buffer
	stopSinks(ctx, &out, feed)
	const want = "parley: sink stuck: 0 delivered, 0 dropped, 0 failed attempts; 1 not delivered in time\n" +
		"parley: sink digest: 1 delivered, 0 dropped, 0 failed attempts\n"
	if out.String() != want || digest.delivered.Load() != 1 {
		t.Errorf("got  %q (%d delivered to the digest)\nwant %q", out.String(), digest.delivered.Load(), want)
	}
}
