// Package connectortest runs a connector for a test, as net/http/httptest runs an HTTP
// server: on a free loopback port, with every activity kept in memory for the test to
// inspect. It is meant for tests only.
//
//	prog := connectortest.Compile(t, `operation: {port: 1}`)
//	srv := connectortest.Start(t, prog)
//	conn, err := net.Dial("tcp", srv.Addr())
//	...
//	srv.Activities.WaitFor(t, v1alpha1.ActivityInput, 1)
package connectortest

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/rules"
)

// wait bounds every wait for something that should happen at once (an activity, Ready, the
// end of Run). It is generous: tests share loaded machines, and a wait that ends on time
// costs nothing.
const wait = 30 * time.Second

// Collector is an activity.Sink that keeps every activity, in order. Its zero value is
// ready to use, and it is safe for concurrent use.
type Collector struct {
	mu   sync.Mutex
	acts []*v1alpha1.ActivityRecord
	// changed, when set, is closed by the next Write (and then cleared).
	changed chan struct{}
}

var _ activity.Sink = (*Collector)(nil)

// Write implements activity.Sink; it never fails.
func (c *Collector) Write(batch []*v1alpha1.ActivityRecord) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.acts = append(c.acts, batch...)
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
	return nil
}

// next returns a channel closed by the next Write.
func (c *Collector) next() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	return c.changed
}

// All returns a copy of every activity recorded so far.
func (c *Collector) All() []*v1alpha1.ActivityRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*v1alpha1.ActivityRecord(nil), c.acts...)
}

// Len is the number of activities recorded so far.
func (c *Collector) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.acts)
}

// Of returns the activities of type typ recorded so far, in order.
func (c *Collector) Of(typ v1alpha1.ActivityType) []*v1alpha1.ActivityRecord {
	var out []*v1alpha1.ActivityRecord
	for _, a := range c.All() {
		if a.Type == typ {
			out = append(out, a)
		}
	}
	return out
}

// WaitFor waits until at least n activities of type typ were recorded and returns them (all
// of them, in order). If they do not come in time, it fails the test with what was recorded.
func (c *Collector) WaitFor(t testing.TB, typ v1alpha1.ActivityType, n int) []*v1alpha1.ActivityRecord {
	t.Helper()
	deadline := time.After(wait)
	for {
		changed := c.next() // before looking, so that no Write goes unnoticed
		if got := c.Of(typ); len(got) >= n {
			return got
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("waited %v for %d %s activities; have:\n%s", wait, n, typ, c.Dump())
		}
	}
}

// Dump renders every activity recorded so far as YAML documents, for failure messages.
func (c *Collector) Dump() string {
	var b strings.Builder
	for _, a := range c.All() {
		doc, _ := yaml.Marshal(a)
		b.WriteString("---\n")
		b.Write(doc)
	}
	return b.String()
}

// Compile compiles a ConversationRules spec written as YAML (the spec only, strictly: an
// unknown field fails the test), as rules named test-rules, generation 1.
func Compile(t testing.TB, specYAML string) *rules.Program {
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

// Server is a connector running for one test, started by Start. Its methods are for the
// test's goroutine; WaitReady goes before Stop and Wait.
type Server struct {
	// Connector is the running connector.
	Connector *connector.Connector
	// Activities holds every activity the connector recorded; after Stop or Wait, all of
	// them.
	Activities *Collector

	t      testing.TB
	reg    *activity.Register
	cancel context.CancelFunc
	done   chan error // receives Run's result
	ended  bool       // Run has returned, and Stop or Wait has seen it
	err    error      // Run's result, once ended
}

// Start runs prog with the options tweak changes, recording into a new Collector, until
// the test ends (or Stop). The connector is named "test".
//
// In server mode it listens on a free port of the loopback address (::1 if the program is
// IPv6, else 127.0.0.1), and Start returns once it serves, unless the program has an
// executionDelay (the test then calls WaitReady, or waits for Connector.Ready, itself). In
// client mode the connector dials as its program says, and Start returns at once.
func Start(t testing.TB, prog *rules.Program, tweak ...func(*connector.Options)) *Server {
	t.Helper()
	acts := &Collector{}
	reg := activity.NewRegister(acts, 0, nil)
	go reg.Run()
	opts := connector.Options{Name: "test", Register: reg}
	if prog.Mode == v1alpha1.ModeServer {
		port, ip := 0, "127.0.0.1"
		if prog.IPv6 {
			ip = "::1"
		}
		opts.Port, opts.IP = &port, &ip
	}
	for _, f := range tweak {
		f(&opts)
	}
	c, err := connector.New(prog, opts)
	if err != nil {
		_ = reg.Close(context.Background())
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Connector: c, Activities: acts, t: t, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- c.Run(ctx) }()
	t.Cleanup(func() { _ = s.Stop() })
	if prog.Mode == v1alpha1.ModeServer && prog.ExecutionDelay == 0 {
		s.WaitReady()
	}
	return s
}

// WaitReady waits until the connector serves (server mode) or dials (client mode), as
// Start does itself in server mode without an executionDelay. It fails the test if Run
// returns first.
func (s *Server) WaitReady() {
	s.t.Helper()
	select {
	case <-s.Connector.Ready():
	case err := <-s.done:
		s.done <- err // for Stop or Wait
		select {
		case <-s.Connector.Ready(): // it served, then ended by itself
		default:
			s.t.Fatalf("connector stopped before serving: %v", err)
		}
	case <-time.After(wait):
		s.t.Fatalf("connector not ready within %v", wait)
	}
}

// Addr is the address the connector serves on (server mode), as host:port.
func (s *Server) Addr() string { return s.Connector.Addr().String() }

// Stop cancels the connector, waits for Run to return, flushes every activity to
// Activities, and returns Run's error. It is idempotent: later calls (and the one when the
// test ends) return the same error.
func (s *Server) Stop() error {
	s.t.Helper()
	if s.ended {
		return s.err
	}
	s.cancel()
	select {
	case s.err = <-s.done:
		s.ended = true
	case <-time.After(wait):
		s.t.Fatalf("connector did not stop within %v", wait)
	}
	s.finish()
	return s.err
}

// Wait waits for Run to return by itself, as a client-mode connector does once its
// conversations have ended, flushes every activity to Activities, and returns Run's error.
// After Wait, Stop does nothing.
func (s *Server) Wait() error {
	s.t.Helper()
	if s.ended {
		return s.err
	}
	select {
	case s.err = <-s.done:
		s.ended = true
	case <-time.After(wait):
		s.t.Fatalf("connector did not finish within %v; activities:\n%s", wait, s.Activities.Dump())
	}
	s.cancel()
	s.finish()
	return s.err
}

// finish flushes the register once Run has returned.
func (s *Server) finish() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.reg.Close(ctx); err != nil {
		s.t.Fatalf("flushing the activities: %v", err)
	}
}

// Buffer is an io.Writer that keeps what is written, safe to read (String) while a
// subprocess writes to it, as exec.Cmd's Stdout and Stderr.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Output collects what a process or a logger writes while the test reads it.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// DTLSClientHello is a DTLS 1.2 ClientHello datagram without a cookie, as a spoofed source
// sends it: the server answers it with a HelloVerifyRequest the source never sees (the tests and hack/hostile's spoofed hellos).
func DTLSClientHello() []byte {
	body := []byte{0xfe, 0xfd} // client_version DTLS 1.2
	random := make([]byte, 32)
	_, _ = rand.Read(random)
	body = append(body, random...)
	body = append(body, 0)                            // session_id
	body = append(body, 0)                            // cookie
	body = append(body, 0, 4, 0xc0, 0x2b, 0xc0, 0x2f) // cipher suites: ECDHE-ECDSA/RSA-AES128-GCM-SHA256
	body = append(body, 1, 0)                         // compression: null
	body = append(body, 0, 0)                         // no extensions
	n := len(body)
	hs := []byte{1, 0, byte(n >> 8), byte(n), 0, 0, 0, 0, 0, 0, byte(n >> 8), byte(n)} // ClientHello, seq 0, one fragment
	hs = append(hs, body...)
	rec := []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(hs) >> 8), byte(len(hs))} // handshake, epoch 0, seq 0
	return append(rec, hs...)
}
