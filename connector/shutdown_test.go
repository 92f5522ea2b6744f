package connector_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/connector/connectortest"
)

// These tests drive the connector through its net/http-like API (Serve, ServePacket,
// RunClients, Shutdown, Close) rather than connectortest's Run, and check with goleak that
// a stopped connector leaves no goroutine behind.

// served is a connector serving in the background; done receives what the serving call
// returned.
type served struct {
	*connector.Connector
	done chan error
}

func newConnector(t *testing.T, name, specYAML string, reg *activity.Register, tweak ...func(*connector.Options)) *connector.Connector {
	t.Helper()
	opts := connector.Options{Name: name, Register: reg}
	for _, f := range tweak {
		f(&opts)
	}
	c, err := connector.New(connectortest.Compile(t, specYAML), opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// serveTCP serves c on a new loopback listener, or ln if given.
func serveTCP(t *testing.T, c *connector.Connector, ln net.Listener) *served {
	t.Helper()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	s := &served{Connector: c, done: make(chan error, 1)}
	go func() { s.done <- c.Serve(ln) }()
	s.waitReady(t)
	return s
}

// serveUDP serves c on pc, or a new loopback UDP socket.
func serveUDP(t *testing.T, c *connector.Connector, pc net.PacketConn) *served {
	t.Helper()
	if pc == nil {
		var err error
		if pc, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	s := &served{Connector: c, done: make(chan error, 1)}
	go func() { s.done <- c.ServePacket(pc) }()
	s.waitReady(t)
	return s
}

func (s *served) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-s.Ready():
	case err := <-s.done:
		t.Fatalf("stopped before serving: %v", err)
	case <-time.After(wait):
		t.Fatal("not serving")
	}
}

// result waits for the serving call to return.
func (s *served) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.done:
		return err
	case <-time.After(wait):
		t.Fatal("the serving call did not return")
		return nil
	}
}

// eventually polls cond until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", wait, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func countOf(acts *connectortest.Collector, name string, typ v1alpha1.ActivityType) int {
	n := 0
	for _, a := range acts.All() {
		if a.Connector == name && a.Type == typ {
			n++
		}
	}
	return n
}

// closeRegister flushes the register, ending its goroutine.
func closeRegister(t *testing.T, reg *activity.Register) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

const liveRules = `
operation: {port: 1, transport: %s, identifyBy: Address, interactionTimeout: 1m}
conversation:
  greetings: {value: "hi;"}
  ending: {value: "bye;"}
  rules:
  - {id: 1, mode: Sync, regex: "GO", response: "go;", trigger: [{ruleID: 2, delay: 1h}]}
  - {id: 2, mode: Async, response: "late;"}
`

// TestShutdownAndCloseEndEveryGoroutine stops a TCP server, a UDP server and a client-mode
// connector (whose conversations are with the TCP server), each with live conversations,
// pending async rules and idle timers: Shutdown sends the endings, Close does not, and
// either way every goroutine of the connectors has returned when they do.
func TestShutdownAndCloseEndEveryGoroutine(t *testing.T) {
	for _, graceful := range []bool{true, false} {
		name := "Close"
		if graceful {
			name = "Shutdown"
		}
		t.Run(name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			acts := &connectortest.Collector{}
			reg := newRegister(acts)

			// The silent peer waits in the idle waiter, from its greeting (FirstInputWait
			// negative), and Shutdown or Close must wake it there.
			tcp := serveTCP(t, newConnector(t, "tcp", fmt.Sprintf(liveRules, "TCP"), reg,
				func(o *connector.Options) { o.FirstInputWait = -1 }), nil)
			udp := serveUDP(t, newConnector(t, "udp", fmt.Sprintf(liveRules, "UDP"), reg), nil)
			port := tcp.Addr().(*net.TCPAddr).Port
			client := &served{Connector: newConnector(t, "client", fmt.Sprintf(`
operation: {mode: Client, ip: 127.0.0.1, port: %d, maxConcurrentConnections: 2, interactionTimeout: 1m}
conversation:
  greetings: {value: "GO"}
  rules: [{id: 1, mode: Sync, regex: "go;", trigger: [{ruleID: 2, delay: 1h}]}, {id: 2, mode: Async, response: "later"}]
`, port), reg), done: make(chan error, 1)}
			go func() { client.done <- client.RunClients() }()

			talking := dialPeer(t, "tcp4", tcp.Addr().String())
			talking.expect("hi;")
			talking.exchange("GO", "go;") // an async rule is now pending, an hour away
			silent := dialPeer(t, "tcp4", tcp.Addr().String())
			silent.expect("hi;")
			u, err := net.DialUDP("udp4", nil, udp.Addr().(*net.UDPAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			if _, err := u.Write([]byte("GO")); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"hi;", "go;"} {
				if got := readDatagram(t, u); got != want {
					t.Fatalf("datagram %q, want %q", got, want)
				}
			}
			// Enough bytes in for the amplification guard to let the ending out (3x the
			// bytes in: 30 for 10, of which 9 are sent before the ending).
			if _, err := u.Write([]byte("GO GO GO")); err != nil {
				t.Fatal(err)
			}
			if got := readDatagram(t, u); got != "go;" {
				t.Fatalf("datagram %q", got)
			}
			eventually(t, "the client's conversations to schedule their async rule", func() bool {
				n := 0
				for _, a := range acts.All() {
					if a.Connector == "client" && a.Type == v1alpha1.ActivityInput && a.Rules != nil && len(a.Rules.Scheduled) > 0 {
						n++
					}
				}
				return n == 2
			})
			if n := tcp.Active(); n != 4 {
				t.Fatalf("%d conversations on the TCP server, want 4", n)
			}

			for _, s := range []*served{client, tcp, udp} {
				if graceful {
					if err := s.Shutdown(context.Background()); err != nil {
						t.Fatalf("Shutdown: %v", err)
					}
				} else if err := s.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				if err := s.result(t); !errors.Is(err, connector.ErrServerClosed) {
					t.Errorf("serving call after the stop: %v, want ErrServerClosed", err)
				}
				if n := s.Active(); n != 0 {
					t.Errorf("%d conversations left", n)
				}
			}
			wantEnding, wantReason := "", "connector closed"
			if graceful {
				wantEnding, wantReason = "bye;", "connector stopping"
			}
			for _, p := range []*peer{talking, silent} {
				if got := p.expectClosed(); got != wantEnding {
					t.Errorf("TCP peer got %q before the close, want %q", got, wantEnding)
				}
			}
			if graceful {
				if got := readDatagram(t, u); got != "bye;" {
					t.Errorf("UDP peer got %q, want the ending", got)
				}
			}
			closeRegister(t, reg)

			for _, a := range acts.All() {
				if a.Type == v1alpha1.ActivityAsync {
					t.Errorf("%s ran an async rule: %+v", a.Connector, a.Rules)
				}
			}
			ended := map[string]int{}
			for _, a := range acts.Of(v1alpha1.ActivityEnded) {
				// The TCP server's conversations with the client end as the client stops.
				if a.Connector != "tcp" || a.Connection.Peer != talking.conn.LocalAddr().String() && a.Connection.Peer != silent.conn.LocalAddr().String() {
					continue
				}
				ended[a.Connector]++
				if !strings.HasPrefix(a.Message, wantReason) {
					t.Errorf("Ended %q, want %q", a.Message, wantReason)
				}
			}
			if ended["tcp"] != 2 {
				t.Errorf("Ended on the TCP server: %d, want 2", ended["tcp"])
			}
			for _, name := range []string{"tcp", "udp", "client"} {
				if n := countOf(acts, name, v1alpha1.ActivityConnectorStopped); n != 1 {
					t.Errorf("%s: %d ConnectorStopped", name, n)
				}
			}
		})
	}
}

func readDatagram(t *testing.T, u *net.UDPConn) string {
	t.Helper()
	_ = u.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	n, err := u.Read(buf)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return string(buf[:n])
}

// TestShutdownDeadlineThenClose holds Shutdown up with a peer that does not read a greeting
// too large for the sockets' buffers: Shutdown returns its context's error, and Close cuts
// the write and ends everything.
func TestShutdownDeadlineThenClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	acts := &connectortest.Collector{}
	reg := newRegister(acts)
	blob := strings.Repeat("x", 32<<10)
	greeting := strings.Repeat("{{blob}}", 256) // 8 MiB
	c := newConnector(t, "tcp", `
operation: {port: 1}
memory: {connection: [{name: blob, type: string, default: "`+blob+`"}]}
conversation:
  greetings: {value: "`+greeting+`"}
  ending: {value: "bye;"}
`, reg, func(o *connector.Options) { o.WriteTimeout = time.Hour })
	s := serveTCP(t, c, nil)
	conn, err := net.Dial("tcp4", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	acts.WaitFor(t, v1alpha1.ActivityConnected, 1) // the greeting is being written, and blocks

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want the context's error", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.result(t); !errors.Is(err, connector.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	closeRegister(t, reg)
	g := acts.Of(v1alpha1.ActivityGreeted)
	if len(g) != 1 || !strings.Contains(g[0].Message, net.ErrClosed.Error()) {
		t.Errorf("Greeted: %+v; want its write cut by Close", g)
	}
	if n := len(acts.Of(v1alpha1.ActivityConnectorStopped)); n != 1 {
		t.Errorf("%d ConnectorStopped", n)
	}
}

// TestStoppedConnectorRefusesToServeAgain: a connector serves once; later serving calls, and
// Run, return ErrServerClosed rather than panic, and close what they were given.
func TestStoppedConnectorRefusesToServeAgain(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	reg := newRegister(&connectortest.Collector{})
	defer closeRegister(t, reg)

	h := start(t, `operation: {port: 1}`)
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := h.Connector.Run(t.Context()); !errors.Is(err, connector.ErrServerClosed) {
		t.Errorf("second Run: %v", err)
	}

	c := newConnector(t, "tcp", `operation: {port: 1}`, reg)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Serve(ln); !errors.Is(err, connector.ErrServerClosed) {
		t.Errorf("Serve after Close: %v", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the listener Serve refused is open: %v", err)
	}
	if err := c.ListenAndServe(); !errors.Is(err, connector.ErrServerClosed) {
		t.Errorf("ListenAndServe after Close: %v", err)
	}
	if err := c.Run(t.Context()); !errors.Is(err, connector.ErrServerClosed) {
		t.Errorf("Run after Close: %v", err)
	}
	if err := c.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown after Close: %v", err)
	}

	u := newConnector(t, "udp", `operation: {port: 1, transport: UDP}`, reg)
	if err := u.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := u.ServePacket(pc); !errors.Is(err, connector.ErrServerClosed) {
		t.Errorf("ServePacket after Shutdown: %v", err)
	}
}

// TestServeTwoListeners: one connector serves two listeners at once, and Shutdown ends both.
func TestServeTwoListeners(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	acts := &connectortest.Collector{}
	reg := newRegister(acts)
	c := newConnector(t, "tcp", `
operation: {port: 1, identifyBy: Address}
conversation: {greetings: {value: "hi;"}, ending: {value: "bye;"}}
`, reg)
	first := serveTCP(t, c, nil)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	second := &served{Connector: c, done: make(chan error, 1)}
	go func() { second.done <- c.Serve(ln) }()
	a := dialPeer(t, "tcp4", first.Addr().String())
	b := dialPeer(t, "tcp4", ln.Addr().String())
	a.expect("hi;")
	b.expect("hi;")
	if err := c.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*served{first, second} {
		if err := s.result(t); !errors.Is(err, connector.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}
	for _, p := range []*peer{a, b} {
		if got := p.expectClosed(); got != "bye;" {
			t.Errorf("got %q", got)
		}
	}
	closeRegister(t, reg)
	if n := len(acts.Of(v1alpha1.ActivityConnectorStarted)); n != 2 {
		t.Errorf("%d ConnectorStarted, want one per listener", n)
	}
	if n := len(acts.Of(v1alpha1.ActivityConnectorStopped)); n != 1 {
		t.Errorf("%d ConnectorStopped", n)
	}
}

// tempError is an error a listener or socket may recover from, as EMFILE.
type tempError struct{}

func (tempError) Error() string   { return "too many open files (injected)" }
func (tempError) Temporary() bool { return true }
func (tempError) Timeout() bool   { return false }

var _ net.Error = tempError{}

// script hands out injected errors in turn; a nil entry, or the end of the script, means
// the real call.
type script struct {
	mu   sync.Mutex
	errs []error
}

func (s *script) next() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) == 0 {
		return nil
	}
	err := s.errs[0]
	s.errs = s.errs[1:]
	return err
}

type scriptedListener struct {
	net.Listener
	script
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	if err := l.next(); err != nil {
		return nil, err
	}
	return l.Listener.Accept()
}

type scriptedPacketConn struct {
	*net.UDPConn
	script
}

func (p *scriptedPacketConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	if err := p.next(); err != nil {
		return 0, netip.AddrPort{}, err
	}
	return p.UDPConn.ReadFromUDPAddrPort(b)
}

func repeat(err error, n int) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = err
	}
	return out
}

// pauses records the pauses a connector asks for between retries, without waiting them out.
type pauses struct {
	mu sync.Mutex
	d  []time.Duration
}

func (p *pauses) hook(c *connector.Connector) {
	connector.SetRetryWait(c, func(d time.Duration) {
		p.mu.Lock()
		p.d = append(p.d, d)
		p.mu.Unlock()
	})
}

func (p *pauses) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprint(p.d)
}

// TestAcceptRetriesTemporaryErrorsWithGrowingPauses: temporary accept errors are recorded
// and retried after pauses that double from 5ms up to 1s, and start over after a success.
func TestAcceptRetriesTemporaryErrorsWithGrowingPauses(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	acts := &connectortest.Collector{}
	reg := newRegister(acts)
	c := newConnector(t, "tcp", `
operation: {port: 1, identifyBy: Address}
conversation: {greetings: {value: "hi;"}}
`, reg)
	var p pauses
	p.hook(c)
	inner, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &scriptedListener{Listener: inner}
	ln.errs = append(append(repeat(tempError{}, 10), nil), repeat(tempError{}, 2)...)
	s := serveTCP(t, c, ln)
	dialPeer(t, "tcp4", inner.Addr().String()).expect("hi;") // after 10 errors
	dialPeer(t, "tcp4", inner.Addr().String()).expect("hi;") // after 2 more
	want := "[5ms 10ms 20ms 40ms 80ms 160ms 320ms 640ms 1s 1s 5ms 10ms]"
	if got := p.String(); got != want {
		t.Errorf("pauses %s, want %s", got, want)
	}
	if err := c.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.result(t); !errors.Is(err, connector.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	closeRegister(t, reg)
	errs := acts.Of(v1alpha1.ActivityError)
	if len(errs) != 12 {
		t.Fatalf("%d Error activities, want one per accept error:\n%s", len(errs), acts.Dump())
	}
	if m := errs[0].Message; !strings.Contains(m, "accept on "+inner.Addr().String()) ||
		!strings.Contains(m, "too many open files (injected)") || !strings.HasSuffix(m, "retrying in 5ms") {
		t.Errorf("first Error: %q", m)
	}
}

// TestAcceptFailsOnAPermanentError: an accept error that is not temporary ends Serve with it.
func TestAcceptFailsOnAPermanentError(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	reg := newRegister(&connectortest.Collector{})
	c := newConnector(t, "tcp", `operation: {port: 1}`, reg)
	var p pauses
	p.hook(c)
	inner, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	broken := errors.New("listener broken (injected)")
	ln := &scriptedListener{Listener: inner}
	ln.errs = []error{tempError{}, broken}
	err = c.Serve(ln)
	if !errors.Is(err, broken) {
		t.Fatalf("Serve: %v, want the listener's error", err)
	}
	if got := p.String(); got != "[5ms]" {
		t.Errorf("pauses %s", got)
	}
	if _, err := inner.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve left its listener open: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	closeRegister(t, reg)
}

// TestUDPReadRetriesTemporaryErrorsAndFailsOnOthers: the UDP read loop treats its errors as
// the accept loop does.
func TestUDPReadRetriesTemporaryErrorsAndFailsOnOthers(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	acts := &connectortest.Collector{}
	reg := newRegister(acts)
	c := newConnector(t, "udp", `
operation: {port: 1, transport: UDP}
conversation: {rules: [{id: 1, mode: Sync, regex: "PING", response: "PONG"}]}
`, reg)
	var p pauses
	p.hook(c)
	inner, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	broken := errors.New("socket broken (injected)")
	pc := &scriptedPacketConn{UDPConn: inner}
	// An ICMP error of an earlier datagram is retried too; the real read comes in between.
	pc.errs = []error{tempError{}, tempError{}, &net.OpError{Op: "read", Net: "udp", Err: syscall.ECONNREFUSED}, nil, broken}
	s := serveUDP(t, c, pc)
	u, err := net.DialUDP("udp4", nil, inner.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := u.Write([]byte("PING")); err != nil {
		t.Fatal(err)
	}
	if got := readDatagram(t, u); got != "PONG" {
		t.Fatalf("reply %q", got)
	}
	if err := s.result(t); !errors.Is(err, broken) {
		t.Errorf("ServePacket: %v, want the socket's error", err)
	}
	if got := p.String(); got != "[5ms 10ms 20ms]" {
		t.Errorf("pauses %s", got)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	closeRegister(t, reg)
	if n := len(acts.Of(v1alpha1.ActivityError)); n != 3 {
		t.Errorf("%d Error activities, want 3:\n%s", n, acts.Dump())
	}
}

// TestServePacketOnAnyPacketConn: ServePacket takes a net.PacketConn that is not a
// *net.UDPConn.
func TestServePacketOnAnyPacketConn(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	reg := newRegister(&connectortest.Collector{})
	c := newConnector(t, "udp", `
operation: {port: 1, transport: UDP}
conversation: {rules: [{id: 1, mode: Sync, regex: "PING", response: "PONG"}]}
`, reg)
	inner, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := serveUDP(t, c, struct{ net.PacketConn }{inner})
	u, err := net.DialUDP("udp4", nil, inner.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := u.Write([]byte("PING")); err != nil {
		t.Fatal(err)
	}
	if got := readDatagram(t, u); got != "PONG" {
		t.Fatalf("reply %q", got)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.result(t); !errors.Is(err, connector.ErrServerClosed) {
		t.Errorf("ServePacket: %v", err)
	}
	closeRegister(t, reg)
}

// TestStopEndsTLSAndDTLSConversations: a TLS or DTLS server with a conversation held by a
// client-mode connector, and (over TCP) a peer that never completes its handshake. Shutdown
// cuts the handshake rather than wait for its timeout and ends the conversation; Close of the
// client and the server leave no goroutine of theirs, nor of the DTLS library, behind.
func TestStopEndsTLSAndDTLSConversations(t *testing.T) {
	for _, transport := range []string{"TCP", "UDP"} {
		t.Run(transport, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			ca := newCA(t, "parley-test")
			cert := ca.issue("server", false, false).pair(t)
			acts := &connectortest.Collector{}
			reg := newRegister(acts)
			server := newConnector(t, "server", fmt.Sprintf(`
operation: {port: 1, transport: %s, tls: {enabled: true}}
conversation:
  greetings: {value: "WELCOME\n"}
  ending: {value: "BYE\n"}
`, transport), reg, func(o *connector.Options) {
				o.IP, o.Port = ptr("127.0.0.1"), ptr(0)
				o.TLS = &connector.TLS{Certificate: &cert, HandshakeTimeout: time.Hour}
			})
			s := &served{Connector: server, done: make(chan error, 1)}
			go func() { s.done <- server.ListenAndServe() }()
			s.waitReady(t)
			if transport == "TCP" {
				stuck, err := net.Dial("tcp4", server.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer stuck.Close()
			}
			port := server.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()
			client := &served{Connector: newConnector(t, "client", fmt.Sprintf(`
operation: {mode: Client, transport: %s, ip: 127.0.0.1, port: %d, maxConcurrentConnections: 1, interactionTimeout: 1h, tls: {enabled: true}}
conversation:
  greetings: {value: "HELLO\n"}
`, transport, port), reg, func(o *connector.Options) {
				o.TLS = &connector.TLS{RootCAs: ca.pool(), ServerName: "localhost"}
			}), done: make(chan error, 1)}
			go func() { client.done <- client.RunClients() }()
			eventually(t, "the client to hear the greeting", func() bool { return countOf(acts, "client", v1alpha1.ActivityInput) > 0 })

			if err := server.Shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := s.result(t); !errors.Is(err, connector.ErrServerClosed) {
				t.Errorf("ListenAndServe: %v", err)
			}
			if err := client.Close(); err != nil {
				t.Fatal(err)
			}
			if err := client.result(t); !errors.Is(err, connector.ErrServerClosed) && err != nil {
				t.Errorf("RunClients: %v", err)
			}
			closeRegister(t, reg)
			if n := countOf(acts, "server", v1alpha1.ActivityEnded); n != 1 {
				t.Errorf("%d conversations ended on the server:\n%s", n, acts.Dump())
			}
		})
	}
}
