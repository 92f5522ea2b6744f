package engine_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/engine"
)

func TestWrongTokensAreRefused(t *testing.T) {
	a := newFixture(t, nil)
	b := newFixture(t, nil)
	credsA, credsB := secretFiles(t, a.ns, a.name), secretFiles(t, b.ns, b.name)

	wrong := credsA
	wrong.token = t.TempDir() + "/token"
	if err := os.WriteFile(wrong.token, []byte("not-the-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		ns    string
		creds connectorCreds
	}{
		"wrong token":               {a.ns, wrong},
		"another connector's token": {b.ns, credsA}, // A's token, presented as connector "decoy" of B's namespace
	} {
		t.Run(name, func(t *testing.T) {
			p := startConnector(t, c.ns, "decoy", mainEngine.Address(), c.creds, "--config-timeout", "10s") // room for a slow first dial; the refusal is retried until then
			err := p.wait(t)
			if err == nil {
				t.Fatalf("the connector ran without a valid token; logs:\n%s", p.logs())
			}
			if logs := p.logs(); !strings.Contains(logs, "PermissionDenied") && !strings.Contains(logs, "not valid") {
				t.Errorf("the logs do not say the token was refused:\n%s", logs)
			}
		})
	}
	_ = credsB

	// A stream bound to A must not write for B.
	stream := rawStream(t, a, credsA)
	rec, _ := json.Marshal(&v1alpha1.ActivityRecord{Connector: "someone-else", Type: v1alpha1.ActivityConnected})
	if err := stream.Send(&enginev1.ConnectorMessage{Message: &enginev1.ConnectorMessage_Activities{
		Activities: &enginev1.ActivityBatch{FirstSeq: 1, Activities: [][]byte{rec}}}}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := stream.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("an activity for another connector ended the stream with %v, want PermissionDenied", err)
		}
		break
	}
	for _, act := range a.activities(t) {
		if act.Connector == "someone-else" {
			t.Fatalf("wrote %s for another connector", act.Name)
		}
	}
}

// rawStream opens an engine stream as connector f with creds, and says Hello.
func rawStream(t *testing.T, f fixture, creds connectorCreds) grpc.BidiStreamingClient[enginev1.ConnectorMessage, enginev1.EngineMessage] {
	t.Helper()
	ca, err := os.ReadFile(creds.ca)
	if err != nil {
		t.Fatal(err)
	}
	token, err := os.ReadFile(creds.token)
	if err != nil {
		t.Fatal(err)
	}
	tlsConfig, err := enginev1.ClientTLSConfig(ca, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(mainEngine.Address(), grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := enginev1.NewEngineClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&enginev1.ConnectorMessage{Message: &enginev1.ConnectorMessage_Hello{Hello: &enginev1.Hello{
		Connector: f.name, Namespace: f.ns, Pod: "raw", Token: string(token), Run: "raw00001"}}}); err != nil {
		t.Fatal(err)
	}
	return stream
}

// traffic runs conversations against f until stop is closed: each is greeted, sends PING
// and QUIT, and gets its ending, so each makes exactly Connected, Greeted, two Inputs and
// Ended, pausing between conversations. The returned function waits for the last one and says how many completed.
func traffic(t *testing.T, f fixture, pause time.Duration, stop <-chan struct{}) func() int {
	var wg sync.WaitGroup
	done := 0
	var failed error
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if failed = conversation(f); failed != nil {
				return
			}
			done++
			time.Sleep(pause)
		}
	})
	return func() int {
		wg.Wait()
		if failed != nil {
			t.Fatalf("after %d conversations: %v", done, failed)
		}
		return done
	}
}

// conversation is one complete conversation with f.
func conversation(f fixture) error {
	c, err := net.DialTimeout("tcp", f.addr(), 5*time.Second)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for _, step := range []struct{ say, want string }{{"", "+OK ready\r\n"}, {"PING\r\n", "+PONG v1\r\n"}, {"QUIT\r\n", "+OK bye\r\n"}} {
		if step.say != "" {
			if _, err := c.Write([]byte(step.say)); err != nil {
				return err
			}
		}
		line, err := r.ReadString('\n')
		if err != nil || line != step.want {
			return fmt.Errorf("got %q (%v), want %q", line, err, step.want)
		}
	}
	return nil
}

// producedBy is what a connector process says in its last log line: the sequence number of
// its last activity (how many it sent), and how many it dropped before sending.
func producedBy(t *testing.T, p *connectorProcess) (sent, dropped int) {
	t.Helper()
	for _, line := range strings.Split(p.logs(), "\n") {
		var entry struct {
			Msg     string `json:"msg"`
			LastSeq int    `json:"lastSeq"`
			Dropped int    `json:"dropped"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "parley connector stopped" {
			return entry.LastSeq, entry.Dropped
		}
	}
	t.Fatalf("the connector did not log how many activities it produced:\n%s", p.logs())
	return 0, 0
}

// activitiesPerConversation is what traffic's conversations each produce.
const activitiesPerConversation = 5

// checkExactlyOnce checks that f's Activities are the numbers 1..want of one process, each
// once: nothing lost, nothing duplicated.
func checkExactlyOnce(t *testing.T, f fixture, want int) {
	t.Helper()
	acts := f.activities(t)
	seqs := map[string][]int{}
	for _, a := range acts {
		parts := strings.Split(strings.TrimPrefix(a.Name, f.name+"-"), "-")
		n, err := strconv.Atoi(parts[1])
		if err != nil {
			t.Fatalf("name %s: %v", a.Name, err)
		}
		seqs[parts[0]] = append(seqs[parts[0]], n)
	}
	if len(seqs) != 1 {
		t.Fatalf("activities of %d processes, want 1", len(seqs))
	}
	for _, s := range seqs {
		sort.Ints(s)
		if len(s) != want || s[0] != 1 || s[len(s)-1] != want {
			t.Fatalf("%d activities numbered %d..%d, want exactly 1..%d", len(s), s[0], s[len(s)-1], want)
		}
	}
}

func TestEngineRestartLosesAndDuplicatesNothing(t *testing.T) {
	f := newFixture(t, nil)
	creds := secretFiles(t, f.ns, f.name)
	// An engine of its own, which the test stops and starts again on the same address.
	ctx1, stop1 := context.WithCancel(context.Background())
	t.Cleanup(stop1) // the test stops it sooner; a failure before then still does
	e1, err := startOperator(ctx1, engine.Options{ActivityQPS: 1000, ActivityBurst: 1000}, false)
	if err != nil {
		t.Fatal(err)
	}
	p := startConnector(t, f.ns, f.name, e1.Address(), creds)
	f.waitServing(t, p)

	stop := make(chan struct{})
	completed := traffic(t, f, 10*time.Millisecond, stop)
	time.Sleep(2 * time.Second)
	stop1()
	time.Sleep(2 * time.Second) // traffic goes on without an engine: the connector buffers
	// Stopped with the test: an engine left running would build the ActivitySinks of the
	// tests after it and write their status under the same field manager as theirs.
	ctx2, stop2 := context.WithCancel(context.Background())
	t.Cleanup(stop2)
	if _, err := startOperator(ctx2, engine.Options{ActivityQPS: 1000, ActivityBurst: 1000, BindAddress: e1.Address()}, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	close(stop)
	n := completed()
	if n < 3 {
		t.Fatalf("only %d conversations completed", n)
	}
	// A graceful stop flushes what is left, then says Bye.
	p.signal(t, syscall.SIGTERM)
	if err := p.wait(t); err != nil {
		t.Fatalf("exit %v", err)
	}
	want, dropped := producedBy(t, p)
	if dropped != 0 {
		t.Fatalf("the connector dropped %d activities", dropped)
	}
	if min := 2 + n*activitiesPerConversation; want < min {
		t.Fatalf("the connector produced %d activities, fewer than the %d of its %d conversations", want, min, n)
	}
	eventually(t, "every activity written", func() error {
		if got := len(f.activities(t)); got != want {
			return fmt.Errorf("%d activities, want %d", got, want)
		}
		return nil
	})
	checkExactlyOnce(t, f, want)
}

func TestFloodIsWrittenAtTheLimitWithExactCounts(t *testing.T) {
	for name, tc := range map[string]struct {
		queue int
		flags []string
	}{
		// The engine's queue overflows.
		"dropped by the engine": {queue: 20},
		// The connector's buffers overflow first, the engine acknowledging at the write rate.
		"dropped by the connector": {queue: 10000, flags: []string{"--activity-buffer", "64", "--replay-buffer", "128"}},
	} {
		t.Run(name, func(t *testing.T) { flood(t, tc.queue, tc.flags) })
	}
}

func flood(t *testing.T, queue int, flags []string) {
	f := newFixture(t, nil)
	creds := secretFiles(t, f.ns, f.name)
	const qps, burst = 10, 10
	ctx, stopEngine := context.WithCancel(context.Background())
	t.Cleanup(stopEngine) // as in TestEngineRestartLosesAndDuplicatesNothing
	e, err := startOperator(ctx, engine.Options{ActivityQPS: qps, ActivityBurst: burst, ActivityQueue: queue}, false)
	if err != nil {
		t.Fatal(err)
	}
	p := startConnector(t, f.ns, f.name, e.Address(), creds, flags...)
	f.waitServing(t, p)

	stop := make(chan struct{})
	completed := traffic(t, f, 0, stop)
	time.Sleep(4 * time.Second)
	close(stop)
	n := completed()
	p.signal(t, syscall.SIGTERM)
	if err := p.wait(t); err != nil {
		t.Fatalf("exit %v", err)
	}
	sent, droppedByConnector := producedBy(t, p)
	produced := int64(sent + droppedByConnector)
	if min := int64(2 + n*activitiesPerConversation); produced < min {
		t.Fatalf("the connector produced %d activities, fewer than the %d of its %d conversations", produced, min, n)
	}
	if produced < 3*(qps+burst) {
		t.Fatalf("only %d activities produced: not a flood", produced)
	}
	if len(flags) > 0 && droppedByConnector == 0 {
		t.Fatalf("the connector dropped nothing with its small buffers")
	}
	var st v1alpha1.ActivityCounts
	eventually(t, "exact counts in status", func() error {
		st = f.connector(t).Status.Activities
		written := int64(len(f.activities(t)))
		if st.Total != produced || st.Recorded != written || st.Recorded+st.Dropped != produced {
			return fmt.Errorf("status %+v, %d written, %d produced (%d dropped by the connector)", st, written, produced, droppedByConnector)
		}
		return nil
	})
	if st.Dropped == 0 {
		t.Errorf("nothing dropped: the flood did not exceed the limit")
	}
	// The write rate: at most burst plus qps per second over the span of the creates.
	acts := f.activities(t)
	first, last := acts[0].CreationTimestamp.Time, acts[0].CreationTimestamp.Time
	for _, a := range acts {
		if ts := a.CreationTimestamp.Time; ts.Before(first) {
			first = ts
		} else if ts.After(last) {
			last = ts
		}
	}
	span := last.Sub(first).Seconds() + 1 // timestamps have one-second resolution
	if limit := float64(burst) + qps*span; float64(len(acts)) > limit {
		t.Errorf("%d Activities written in %.0fs: over the limit of %.0f", len(acts), span, limit)
	}
	f.waitEvent(t, "ActivitiesDropped")
}
