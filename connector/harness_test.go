package connector_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/connector/rules"
)

// wait is how long tests wait for something that should happen at once; generous, because
// CI machines are loaded. Timing tests check order and lower bounds, with upper bounds of
// several times the delay.
const wait = 10 * time.Second

// collector is a Sink that keeps every activity for inspection.
type collector struct {
	mu   sync.Mutex
	acts []*v1alpha1.ActivityRecord
	cond chan struct{}
}

func newCollector() *collector { return &collector{cond: make(chan struct{}, 1)} }

func (c *collector) Write(batch []*v1alpha1.ActivityRecord) error {
	c.mu.Lock()
	c.acts = append(c.acts, batch...)
	c.mu.Unlock()
	select {
	case c.cond <- struct{}{}:
	default:
	}
	return nil
}

func (c *collector) all() []*v1alpha1.ActivityRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*v1alpha1.ActivityRecord(nil), c.acts...)
}

// of returns the activities of a type, in order.
func (c *collector) of(typ v1alpha1.ActivityType) []*v1alpha1.ActivityRecord {
	var out []*v1alpha1.ActivityRecord
	for _, a := range c.all() {
		if a.Type == typ {
			out = append(out, a)
		}
	}
	return out
}

// waitFor waits until n activities of typ were recorded and returns them.
func (c *collector) waitFor(t *testing.T, typ v1alpha1.ActivityType, n int) []*v1alpha1.ActivityRecord {
	t.Helper()
	deadline := time.After(wait)
	for {
		if got := c.of(typ); len(got) >= n {
			return got
		}
		select {
		case <-c.cond:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("waited %v for %d %s activities; have:\n%s", wait, n, typ, c.dump())
		}
	}
}

func (c *collector) dump() string {
	var b strings.Builder
	for _, a := range c.all() {
		line, _ := yaml.Marshal(a)
		b.WriteString("---\n")
		b.Write(line)
	}
	return b.String()
}

// compile compiles a spec written as YAML (the spec only).
func compile(t testing.TB, specYAML string) *rules.Program {
	t.Helper()
	var spec v1alpha1.ConversationRulesSpec
	if err := yaml.UnmarshalStrict([]byte(specYAML), &spec); err != nil {
		t.Fatalf("spec YAML: %v", err)
	}
	prog, errs := rules.Compile("test-rules", 1, &spec)
	if len(errs) > 0 {
		t.Fatalf("compile: %v", errs.ToAggregate())
	}
	return prog
}

// harness runs a connector on a free loopback port for one test.
type harness struct {
	t      *testing.T
	c      *connector.Connector
	acts   *collector
	reg    *activity.Register
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, specYAML string, tweak ...func(*connector.Options)) *harness {
	t.Helper()
	return startProgram(t, compile(t, specYAML), tweak...)
}

func startProgram(t *testing.T, prog *rules.Program, tweak ...func(*connector.Options)) *harness {
	t.Helper()
	acts := newCollector()
	reg := activity.NewRegister(acts, 0, nil)
	go reg.Run()
	port := 0
	ip := "127.0.0.1"
	if prog.IPv6 {
		ip = "::1"
	}
	opts := connector.Options{Name: "test", Register: reg}
	if prog.Mode == v1alpha1.ModeServer {
		opts.Port, opts.IP = &port, &ip
	}
	for _, f := range tweak {
		f(&opts)
	}
	c, err := connector.New(prog, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, c: c, acts: acts, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- c.Run(ctx) }()
	t.Cleanup(func() { h.stop() })
	if prog.Mode == v1alpha1.ModeServer && prog.ExecutionDelay == 0 {
		select {
		case <-c.Ready():
		case err := <-h.done:
			t.Fatalf("connector stopped before serving: %v", err)
		case <-time.After(wait):
			t.Fatal("connector not ready")
		}
	}
	return h
}

// stop cancels the connector, waits for Run, and flushes the activities. Idempotent.
func (h *harness) stop() error {
	h.t.Helper()
	if h.cancel == nil {
		return nil
	}
	h.cancel()
	h.cancel = nil
	var err error
	select {
	case err = <-h.done:
	case <-time.After(wait):
		h.t.Fatal("connector did not stop")
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if cerr := h.reg.Close(ctx); cerr != nil {
		h.t.Fatal(cerr)
	}
	return err
}

// waitDone waits for Run to return by itself (client mode) and flushes the activities.
func (h *harness) waitDone() error {
	h.t.Helper()
	var err error
	select {
	case err = <-h.done:
	case <-time.After(wait):
		h.t.Fatalf("connector did not finish; activities:\n%s", h.acts.dump())
	}
	h.cancel()
	h.cancel = nil
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_ = h.reg.Close(ctx)
	return err
}

func (h *harness) addr() string { return h.c.Addr().String() }

// peer is a real client socket with helpers to expect replies.
type peer struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func (h *harness) dial() *peer {
	h.t.Helper()
	return dialPeer(h.t, h.c.Addr().Network(), h.addr())
}

func dialPeer(t *testing.T, network, addr string) *peer {
	t.Helper()
	conn, err := net.DialTimeout(network, addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &peer{t: t, conn: conn, r: bufio.NewReader(conn)}
}

func (p *peer) send(s string) {
	p.t.Helper()
	if _, err := p.conn.Write([]byte(s)); err != nil {
		p.t.Fatalf("send %q: %v", s, err)
	}
}

// expect reads exactly len(want) bytes and compares.
func (p *peer) expect(want string) {
	p.t.Helper()
	_ = p.conn.SetReadDeadline(time.Now().Add(wait))
	got := make([]byte, len(want))
	n, err := io.ReadFull(p.r, got)
	if err != nil || string(got) != want {
		p.t.Fatalf("expected %q, got %q (err %v)", want, got[:n], err)
	}
}

// expectClosed reads until EOF and returns what came before it.
func (p *peer) expectClosed() string {
	p.t.Helper()
	_ = p.conn.SetReadDeadline(time.Now().Add(wait))
	rest, err := io.ReadAll(p.r)
	if err != nil {
		p.t.Fatalf("expected the server to close; got %v after %q", err, rest)
	}
	return string(rest)
}

// expectSilence checks that nothing arrives for d.
func (p *peer) expectSilence(d time.Duration) {
	p.t.Helper()
	_ = p.conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 256)
	n, err := p.r.Read(buf)
	if n > 0 || (err != nil && !isTimeout(err)) {
		p.t.Fatalf("expected silence, got %q (err %v)", buf[:n], err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// exchange sends s and expects want.
func (p *peer) exchange(s, want string) {
	p.t.Helper()
	p.send(s)
	p.expect(want)
}

func ids(v []int32) string { return fmt.Sprint(v) }

// quiet sends s, which should get no reply, and waits until the connector has recorded it
// as input number n (1-based), so that the next send is a separate read.
func (h *harness) quiet(p *peer, s string, n int) {
	h.t.Helper()
	p.send(s)
	h.acts.waitFor(h.t, v1alpha1.ActivityInput, n)
}

func newRegister(s activity.Sink) *activity.Register {
	r := activity.NewRegister(s, 0, nil)
	go r.Run()
	return r
}

func ptr[T any](v T) *T { return &v }
