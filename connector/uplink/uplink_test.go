package uplink_test

// The engine in these tests is uplinktest.Engine, an in-process gRPC server over real TLS on
// loopback standing in for the operator's engine (which has its own tests against envtest).

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/connector/uplink"
	"github.com/parley-dev/parley/connector/uplink/uplinktest"
)

// harness runs an uplink against e for one test.
type harness struct {
	t    *testing.T
	u    *uplink.Uplink
	reg  *prometheus.Registry
	done chan error
	stop context.CancelFunc
}

func start(t *testing.T, e *uplinktest.Engine, mutate func(*uplink.Options)) *harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts := uplink.Options{
		Address:   e.Addr(),
		TLS:       func() (*tls.Config, error) { return e.ClientTLS(), nil },
		Token:     func() (string, error) { return "secret", nil },
		Connector: "decoy", Namespace: "ns", Pod: "decoy-0", Version: "test",
		Backoff:    uplink.Backoff{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond},
		Logger:     testr.New(t),
		Registerer: reg,
	}
	if mutate != nil {
		mutate(&opts)
	}
	u, err := uplink.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, u: u, reg: reg, done: make(chan error, 1), stop: cancel}
	go func() { h.done <- u.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(uplinktest.Wait):
			t.Error("Run did not return after its context was cancelled")
		}
	})
	return h
}

// wait returns Run's result, failing if it takes too long.
func (h *harness) wait() error {
	h.t.Helper()
	select {
	case err := <-h.done:
		h.done <- err // for Cleanup
		return err
	case <-time.After(uplinktest.Wait):
		h.t.Fatal("Run did not return")
		return nil
	}
}

func record(i int) *v1alpha1.ActivityRecord {
	return &v1alpha1.ActivityRecord{
		Connector: "decoy", Type: v1alpha1.ActivityInput, Message: fmt.Sprintf("a-%d", i),
		Time: metav1.NowMicro(), Connection: &v1alpha1.ConnectionRef{ID: "c-000001", Peer: "192.0.2.1:4000", Transport: v1alpha1.TransportTCP},
	}
}

func write(t *testing.T, u *uplink.Uplink, from, to int) {
	t.Helper()
	var batch []*v1alpha1.ActivityRecord
	for i := from; i <= to; i++ {
		batch = append(batch, record(i))
		if len(batch) == 100 || i == to {
			if err := u.Write(batch); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
	}
}

// message decodes an activity as the engine would, returning its message.
func message(t *testing.T, raw []byte) string {
	t.Helper()
	var a v1alpha1.ActivityRecord
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("activity %q: %v", raw, err)
	}
	return a.Message
}

// checkExactly verifies that the engine holds activities 1..n, seq i carrying a-<i+offset>.
func checkExactly(t *testing.T, e *uplinktest.Engine, n, offset int) {
	t.Helper()
	acts := e.Activities()
	if len(acts) != n {
		t.Fatalf("engine holds %d distinct activities, want %d", len(acts), n)
	}
	for seq := 1; seq <= n; seq++ {
		raw, ok := acts[uint64(seq)]
		if !ok {
			t.Fatalf("seq %d missing", seq)
		}
		if got, want := message(t, raw), fmt.Sprintf("a-%d", seq+offset); got != want {
			t.Fatalf("seq %d carries %q, want %q", seq, got, want)
		}
	}
}

func TestBatchesArriveInOrderWithConsecutiveSeqs(t *testing.T) {
	e := uplinktest.New(t)
	h := start(t, e, nil)
	const n = 3000
	write(t, h.u, 1, n)
	uplinktest.Eventually(t, "every activity acknowledged", func() bool { return h.u.Stats().Acked == n })

	next := uint64(1)
	for _, b := range e.Batches() {
		if b.GetFirstSeq() != next {
			t.Fatalf("batch starts at %d, want %d", b.GetFirstSeq(), next)
		}
		if l := len(b.GetActivities()); l == 0 || l > uplink.MaxBatch {
			t.Fatalf("batch of %d activities", l)
		}
		next += uint64(len(b.GetActivities()))
	}
	if next != n+1 {
		t.Fatalf("batches end at %d, want %d", next-1, n)
	}
	checkExactly(t, e, n, 0)
	if got := len(e.Received()); got != n {
		t.Errorf("%d activities received, want %d (no replays without a reconnection)", got, n)
	}
	if st := h.u.Stats(); st.Buffered != 0 || st.LastSeq != n || !st.Connected {
		t.Errorf("stats %+v", st)
	}

	hello := e.Hellos()[0]
	if hello.GetConnector() != "decoy" || hello.GetNamespace() != "ns" || hello.GetPod() != "decoy-0" ||
		hello.GetToken() != "secret" || hello.GetVersion() != "test" || hello.GetRulesHash() != "" {
		t.Errorf("hello %v", hello)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}$`).MatchString(hello.GetRun()) || hello.GetRun() != h.u.RunID() {
		t.Errorf("run %q (RunID %q)", hello.GetRun(), h.u.RunID())
	}
	if got := metric(t, h.reg, "parley_connector_engine_activities_acked_total"); got != n {
		t.Errorf("acked metric %v", got)
	}
}

// metric is the value of the uplink's metric name.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestAcksFreeTheBufferAndTheWindowBoundsSending(t *testing.T) {
	e := uplinktest.New(t)
	e.SetManualAck(true)
	h := start(t, e, func(o *uplink.Options) { o.ReplayCapacity, o.Window = 100, 40 })
	write(t, h.u, 1, 100)
	uplinktest.Eventually(t, "a window of activities sent", func() bool { return len(e.Received()) == 40 })
	time.Sleep(100 * time.Millisecond)
	if got := len(e.Received()); got != 40 {
		t.Fatalf("%d activities sent with a window of 40 and no ack", got)
	}
	if st := h.u.Stats(); st.Buffered != 100 {
		t.Fatalf("buffered %d, want 100", st.Buffered)
	}

	blocked := make(chan error, 1)
	go func() { blocked <- h.u.Write([]*v1alpha1.ActivityRecord{record(101)}) }()
	select {
	case err := <-blocked:
		t.Fatalf("Write on a full buffer returned at once (%v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	e.Ack(30)
	select {
	case err := <-blocked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(uplinktest.Wait):
		t.Fatal("an ack did not unblock Write")
	}
	uplinktest.Eventually(t, "the window to slide", func() bool { return len(e.Received()) == 70 })
	if st := h.u.Stats(); st.Buffered != 71 || st.Acked != 30 {
		t.Fatalf("stats %+v, want 71 buffered, 30 acked", st)
	}
	if got := metric(t, h.reg, "parley_connector_engine_buffered_activities"); got != 71 {
		t.Errorf("buffer metric %v", got)
	}
	e.SetManualAck(false)
	e.Ack(70)
	uplinktest.Eventually(t, "everything acknowledged", func() bool { return h.u.Stats().Acked == 101 })
	checkExactly(t, e, 101, 0)
}

func TestReplayAfterTheEngineRestartsKeepsSeqs(t *testing.T) {
	e := uplinktest.New(t)
	e.SetManualAck(true)
	h := start(t, e, nil)
	write(t, h.u, 1, 300)
	uplinktest.Eventually(t, "300 activities sent", func() bool { return len(e.Received()) == 300 })
	first := e.Activities()
	e.Ack(100)
	uplinktest.Eventually(t, "100 acknowledged", func() bool { return h.u.Stats().Acked == 100 })

	e.Stop()
	uplinktest.Eventually(t, "the uplink to notice", func() bool { return !h.u.Stats().Connected })
	write(t, h.u, 301, 500) // while the engine is away
	e.SetManualAck(false)
	e.Restart(t)
	uplinktest.Eventually(t, "every activity acknowledged after the restart", func() bool { return h.u.Stats().Acked == 500 })

	checkExactly(t, e, 500, 0)
	after := e.Activities()
	for seq, raw := range first {
		if string(after[seq]) != string(raw) {
			t.Fatalf("seq %d replayed with other content", seq)
		}
	}
	// Seqs 101-300 came twice, 1-100 (acked) once.
	counts := map[uint64]int{}
	for _, s := range e.Received() {
		counts[s]++
	}
	for seq := uint64(1); seq <= 500; seq++ {
		want := 1
		if seq > 100 && seq <= 300 {
			want = 2
		}
		if counts[seq] != want {
			t.Fatalf("seq %d received %d times, want %d", seq, counts[seq], want)
		}
	}
	hellos := e.Hellos()
	if len(hellos) < 2 || hellos[0].GetRun() != hellos[len(hellos)-1].GetRun() {
		t.Errorf("hellos %v: want the same run id after a reconnection", hellos)
	}
	if got := metric(t, h.reg, "parley_connector_engine_activities_replayed_total"); got != 200 {
		t.Errorf("replayed metric %v, want 200", got)
	}
	if got := metric(t, h.reg, "parley_connector_engine_reconnects_total"); got < 1 {
		t.Errorf("reconnects metric %v", got)
	}
}

// TestNoneLostAcrossEngineCrashes produces activities through a register while the engine
// is killed and restarted under it: what was recorded arrives exactly once per seq.
func TestNoneLostAcrossEngineCrashes(t *testing.T) {
	e := uplinktest.New(t)
	h := start(t, e, func(o *uplink.Options) { o.ReplayCapacity = 1 << 16 })
	reg := activity.NewRegister(h.u, 1<<16, func(err error) { t.Error(err) })
	go reg.Run()

	const n = 20000
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 1; i <= n; i++ {
			reg.Record(record(i))
			if i%500 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	for range 3 {
		time.Sleep(40 * time.Millisecond)
		e.Stop()
		time.Sleep(40 * time.Millisecond)
		e.Restart(t)
	}
	<-produced
	ctx, cancel := context.WithTimeout(context.Background(), uplinktest.Wait)
	defer cancel()
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.u.Flush(ctx, "test over"); err != nil {
		t.Fatal(err)
	}
	st := reg.Stats()
	if st.Recorded+st.Dropped != n || st.Dropped != 0 {
		t.Fatalf("register %+v", st)
	}
	checkExactly(t, e, n, 0)
	if got := metric(t, h.reg, "parley_connector_engine_reconnects_total"); got < 3 {
		t.Errorf("reconnects %v, want at least 3", got)
	}
}

func TestFullBufferBlocksWriteButNotRecord(t *testing.T) {
	e := uplinktest.New(t)
	e.SetManualAck(true)
	h := start(t, e, func(o *uplink.Options) { o.ReplayCapacity = 10 })
	reg := activity.NewRegister(h.u, 20, nil)
	go reg.Run()

	// Nothing is acknowledged until the Records are done: if Record waited for the uplink,
	// they would never be.
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		for i := 1; i <= 1000; i++ {
			reg.Record(record(i))
		}
	}()
	select {
	case <-recorded:
	case <-time.After(uplinktest.Wait):
		t.Fatal("1000 Records did not return: the register waits for the uplink")
	}
	uplinktest.Eventually(t, "the replay buffer to fill", func() bool { return h.u.Stats().Buffered == 10 })
	st := reg.Stats()
	if st.Dropped == 0 || st.Recorded+st.Dropped != 1000 {
		t.Fatalf("register %+v: want drops counted", st)
	}
	e.SetManualAck(false)
	e.Ack(10)
	ctx, cancel := context.WithTimeout(context.Background(), uplinktest.Wait)
	defer cancel()
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	uplinktest.Eventually(t, "every recorded activity acknowledged", func() bool { return h.u.Stats().Acked == st.Recorded })
	if got := len(e.Activities()); uint64(got) != st.Recorded {
		t.Fatalf("engine holds %d, register recorded %d", got, st.Recorded)
	}
}

// Large activities fill the replay buffer by bytes long before its count: Write blocks at
// the byte budget, the register in front drops and counts, and nothing is lost uncounted.
func TestReplayBufferBoundedByBytes(t *testing.T) {
	const budget = 1 << 20
	e := uplinktest.New(t)
	e.SetManualAck(true)
	h := start(t, e, func(o *uplink.Options) { o.ReplayCapacity, o.ReplayBytes = 1000, budget })
	reg := activity.NewRegister(h.u, 20, nil)
	go reg.Run()
	big := strings.Repeat("x", 100<<10)
	for i := 1; i <= 100; i++ {
		a := record(i)
		a.Input = &v1alpha1.InputRecord{Text: big, Bytes: int32(len(big))}
		reg.Record(a)
	}
	uplinktest.Eventually(t, "the replay buffer to fill by bytes", func() bool {
		st := h.u.Stats()
		return st.Buffered > 0 && st.BufferedBytes+(100<<10) > budget
	})
	st := h.u.Stats()
	if st.BufferedBytes > budget || st.Buffered >= 1000 {
		t.Fatalf("replay buffer holds %d activities, %d bytes: over the budget %d", st.Buffered, st.BufferedBytes, budget)
	}
	rs := reg.Stats()
	if rs.Dropped == 0 || rs.Recorded+rs.Dropped != 100 {
		t.Fatalf("register %+v: want drops counted", rs)
	}
	e.SetManualAck(false)
	e.Ack(st.LastSeq)
	ctx, cancel := context.WithTimeout(context.Background(), uplinktest.Wait)
	defer cancel()
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rs = reg.Stats()
	uplinktest.Eventually(t, "every recorded activity acknowledged", func() bool { return h.u.Stats().Acked == rs.Recorded })
	if got := h.u.Stats().BufferedBytes; got != 0 {
		t.Fatalf("%d bytes still counted after every ack", got)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	b := uplink.DefaultBackoff
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
		4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i, w := range want {
		if got := b.Ceiling(i); got != w {
			t.Errorf("Ceiling(%d) = %v, want %v", i, got, w)
		}
	}
	if got := b.Ceiling(1000); got != 5*time.Second {
		t.Errorf("Ceiling(1000) = %v", got)
	}
	// Full jitter: delays spread over [0, ceiling].
	var low, high bool
	for range 1000 {
		d := b.Delay(4)
		if d < 0 || d > 4*time.Second {
			t.Fatalf("Delay(4) = %v outside [0, 4s]", d)
		}
		low = low || d < time.Second
		high = high || d > 3*time.Second
	}
	if !low || !high {
		t.Errorf("Delay(4) not spread over its range (low %v, high %v)", low, high)
	}
	for range 100 {
		if d := b.Delay(50); d > 5*time.Second {
			t.Fatalf("Delay(50) = %v over the cap", d)
		}
	}
}

func TestPermissionDeniedIsRetriedUntilTheTokenIsFixed(t *testing.T) {
	e := uplinktest.New(t)
	e.SetToken("right")
	var token atomic.Value
	token.Store("wrong")
	h := start(t, e, func(o *uplink.Options) {
		o.Token = func() (string, error) { return token.Load().(string), nil }
		o.Backoff = uplink.Backoff{Base: 40 * time.Millisecond, Max: 80 * time.Millisecond}
	})
	uplinktest.Eventually(t, "three refused dials", func() bool { return len(e.Hellos()) >= 3 })
	if code := status.Code(h.u.LastError()); code != codes.PermissionDenied {
		t.Fatalf("last error %v, want PermissionDenied", h.u.LastError())
	}
	write(t, h.u, 1, 5)
	token.Store("right")
	uplinktest.Eventually(t, "delivery once the token is fixed", func() bool { return h.u.Stats().Acked == 5 })
	checkExactly(t, e, 5, 0)
}

func TestFlushWaitsForAcksThenSaysBye(t *testing.T) {
	e := uplinktest.New(t)
	e.SetManualAck(true)
	h := start(t, e, nil)
	write(t, h.u, 1, 10)
	uplinktest.Eventually(t, "10 sent", func() bool { return len(e.Received()) == 10 })

	flushed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), uplinktest.Wait)
		defer cancel()
		flushed <- h.u.Flush(ctx, "END order")
	}()
	e.Ack(5)
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned (%v) with 5 activities unacknowledged", err)
	case <-time.After(200 * time.Millisecond):
	}
	if len(e.Byes()) != 0 {
		t.Fatal("Bye before every activity was acknowledged")
	}
	if err := h.u.Write([]*v1alpha1.ActivityRecord{record(11)}); !errors.Is(err, uplink.ErrClosed) {
		t.Fatalf("Write during Flush: %v, want ErrClosed", err)
	}
	e.Ack(10)
	select {
	case err := <-flushed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(uplinktest.Wait):
		t.Fatal("Flush did not return after the last ack")
	}
	byes := e.Byes()
	if len(byes) != 1 || byes[0].GetLastSeq() != 10 || byes[0].GetReason() != "END order" {
		t.Fatalf("byes %v", byes)
	}
	if err := h.wait(); err != nil {
		t.Fatalf("Run after Bye: %v", err)
	}
	checkNoGoroutines(t)
}

func TestFlushGivesUpAtItsDeadline(t *testing.T) {
	e := uplinktest.New(t)
	e.SetManualAck(true)
	h := start(t, e, nil)
	write(t, h.u, 1, 7)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := h.u.Flush(ctx, "bye")
	if err == nil || !strings.Contains(err.Error(), "7 activities not acknowledged") {
		t.Fatalf("Flush: %v", err)
	}
	if len(e.Byes()) != 0 {
		t.Fatal("Bye said with activities unacknowledged")
	}
	h.stop()
	if err := h.wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	checkNoGoroutines(t)
}

func TestConfigsOrdersAndDisconnect(t *testing.T) {
	e := uplinktest.New(t)
	e.SetConfig(&enginev1.Config{RulesName: "r", Generation: 1, Hash: "sha256:one"})
	// A long backoff: only a DISCONNECT's immediate redial can reconnect within the test.
	h := start(t, e, func(o *uplink.Options) { o.Backoff = uplink.Backoff{Base: time.Hour, Max: time.Hour} })
	select {
	case c := <-h.u.Configs():
		if c.GetHash() != "sha256:one" {
			t.Fatalf("config %v", c)
		}
	case <-time.After(uplinktest.Wait):
		t.Fatal("no Config delivered")
	}
	h.u.SetRulesHash("sha256:one")

	// Two Configs not taken: the process gets the latest only. The Order after them is
	// handled after them (one stream, one receiving goroutine): once the process has it, both
	// Configs have reached the uplink, however slowly.
	e.SetConfig(&enginev1.Config{RulesName: "r", Generation: 2, Hash: "sha256:two"})
	e.SetConfig(&enginev1.Config{RulesName: "r", Generation: 3, Hash: "sha256:three"})
	if e.Order(enginev1.Order_PAUSE, "paused by spec") != 1 {
		t.Fatal("no stream to order")
	}
	select {
	case o := <-h.u.Orders():
		if o.GetKind() != enginev1.Order_PAUSE || o.GetReason() != "paused by spec" {
			t.Fatalf("order %v", o)
		}
	case <-time.After(uplinktest.Wait):
		t.Fatal("no Order delivered")
	}
	select {
	case c := <-h.u.Configs():
		if c.GetGeneration() != 3 {
			t.Fatalf("config generation %d, want 3 (the latest)", c.GetGeneration())
		}
	default:
		t.Fatal("no Config waiting for the process")
	}
	h.u.SetRulesHash("sha256:three")

	e.Order(enginev1.Order_DISCONNECT, "engine shutting down")
	uplinktest.Eventually(t, "an immediate redial", func() bool { return len(e.Hellos()) == 2 && e.Live() == 1 })
	if got := e.Hellos()[1].GetRulesHash(); got != "sha256:three" {
		t.Errorf("second Hello rules_hash %q, want the running rules'", got)
	}
	select {
	case o := <-h.u.Orders():
		t.Fatalf("DISCONNECT handed to the process: %v", o)
	case c := <-h.u.Configs():
		t.Fatalf("Config resent although the Hello said the rules run: %v", c)
	case <-time.After(100 * time.Millisecond):
	}
	write(t, h.u, 1, 3)
	uplinktest.Eventually(t, "delivery after the redial", func() bool { return h.u.Stats().Acked == 3 })
}

func TestHeartbeatsCarryTheCounters(t *testing.T) {
	e := uplinktest.New(t)
	var n atomic.Uint64
	start(t, e, func(o *uplink.Options) {
		o.HeartbeatInterval = 30 * time.Millisecond
		o.Heartbeat = func() *enginev1.Heartbeat {
			return &enginev1.Heartbeat{ActiveConnections: 2, TotalConnections: n.Add(1), ActivitiesProduced: 7, Paused: true}
		}
	})
	uplinktest.Eventually(t, "three heartbeats", func() bool { return len(e.Heartbeats()) >= 3 })
	hbs := e.Heartbeats()
	for i, hb := range hbs {
		if hb.GetActiveConnections() != 2 || hb.GetActivitiesProduced() != 7 || !hb.GetPaused() || hb.GetTotalConnections() != uint64(i+1) {
			t.Fatalf("heartbeat %d: %v", i, hb)
		}
	}
}

// A redial's Hello carries the last heartbeat sent before it, so that the next leader counts
// the process's totals from there rather than from zero.
func TestHelloCarriesTheLastHeartbeatSent(t *testing.T) {
	e := uplinktest.New(t)
	var n atomic.Uint64
	start(t, e, func(o *uplink.Options) {
		o.HeartbeatInterval = 20 * time.Millisecond
		o.Heartbeat = func() *enginev1.Heartbeat { return &enginev1.Heartbeat{TotalConnections: n.Add(1)} }
	})
	uplinktest.Eventually(t, "two heartbeats", func() bool { return len(e.Heartbeats()) >= 2 })
	if h := e.Hellos()[0]; h.GetLastHeartbeat() != nil {
		t.Errorf("the first Hello carries a heartbeat: %v", h.GetLastHeartbeat())
	}
	e.Stop()
	received := e.Heartbeats()
	e.Restart(t)
	uplinktest.Eventually(t, "a redial", func() bool { return len(e.Hellos()) >= 2 })
	last := e.Hellos()[1].GetLastHeartbeat()
	// Sent, so at least the last one the engine received (one more may have been sent into
	// the breaking stream).
	if min := received[len(received)-1].GetTotalConnections(); last == nil || last.GetTotalConnections() < min || last.GetTotalConnections() > min+1 {
		t.Fatalf("the redial's Hello carries %v, want the last heartbeat sent (total %d or one more)", last, min)
	}
}

func TestASilentEngineIsRedialed(t *testing.T) {
	e := uplinktest.New(t)
	e.SetManualAck(true)
	h := start(t, e, func(o *uplink.Options) {
		o.AckTimeout, o.HeartbeatInterval = 200*time.Millisecond, 20*time.Millisecond
	})
	write(t, h.u, 1, 4)
	uplinktest.Eventually(t, "a redial after the engine stayed silent", func() bool { return len(e.Hellos()) >= 2 })
	if err := h.u.LastError(); err == nil || !strings.Contains(err.Error(), "acknowledged nothing") {
		t.Errorf("last error %v", err)
	}
	e.SetManualAck(false)
	uplinktest.Eventually(t, "replay after the redial", func() bool { return h.u.Stats().Acked == 4 })
}

func TestCloseUnblocksWrite(t *testing.T) {
	e := uplinktest.New(t)
	e.SetManualAck(true)
	h := start(t, e, func(o *uplink.Options) { o.ReplayCapacity = 2 })
	blocked := make(chan error, 1)
	go func() {
		blocked <- h.u.Write([]*v1alpha1.ActivityRecord{record(1), record(2), record(3), record(4)})
	}()
	uplinktest.Eventually(t, "a full buffer", func() bool { return h.u.Stats().Buffered == 2 })
	h.u.Close()
	select {
	case err := <-blocked:
		if !errors.Is(err, uplink.ErrClosed) {
			t.Fatalf("Write: %v", err)
		}
	case <-time.After(uplinktest.Wait):
		t.Fatal("Close did not unblock Write")
	}
	if st := h.u.Stats(); st.Dropped != 2 {
		t.Errorf("dropped %d, want 2", st.Dropped)
	}
}

// checkNoGoroutines fails if a goroutine of the uplink outlives Run.
func checkNoGoroutines(t *testing.T) {
	t.Helper()
	var stacks string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "connector/uplink.(*Uplink)") {
			return
		}
	}
	t.Fatalf("uplink goroutines left after Run returned:\n%s", stacks)
}
