package connector_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/rules"
)

// wait is how long tests wait for something that should happen at once; generous, because
// CI machines are loaded. Timing tests check order and lower bounds, with upper bounds of
// several times the delay.
const wait = 30 * time.Second

// harness is a connector served for one test on a free loopback port (see
// connectortest.Start), with helpers to talk to it as a peer.
type harness struct {
	*connectortest.Server
	t *testing.T
}

// start compiles specYAML and runs it until the test ends.
func start(t *testing.T, specYAML string, tweak ...func(*connector.Options)) *harness {
	t.Helper()
	return startProgram(t, connectortest.Compile(t, specYAML), tweak...)
}

func startProgram(t *testing.T, prog *rules.Program, tweak ...func(*connector.Options)) *harness {
	t.Helper()
	return &harness{Server: connectortest.Start(t, prog, tweak...), t: t}
}

// peer is a real client socket with helpers to expect replies.
type peer struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func (h *harness) dial() *peer {
	h.t.Helper()
	return dialPeer(h.t, h.Connector.Addr().Network(), h.Addr())
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
	h.Activities.WaitFor(h.t, v1alpha1.ActivityInput, n)
}

func newRegister(s activity.Sink) *activity.Register {
	r := activity.NewRegister(s, 0, nil)
	go r.Run()
	return r
}

func ptr[T any](v T) *T { return &v }
