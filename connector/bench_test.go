package connector_test

// Benchmarks of the connector's hot paths over loopback, each beside a bare Go server of the
// same shape (the baseline) so that the ratio can be read off one run:
//
//	go test -run '^$' -bench . -benchtime 2s ./connector
//
// Sub-benchmarks:
//
//	baseline          a bare Go server: greeting, PING → PONG, nothing else
//	parley/discard    the connector with a Sink that only counts activities (no encoding)
//	parley/json       the connector with activity.JSONSink writing to io.Discard
//
// The client runs in the same process, so allocs/op and B/op count both sides; the baseline's
// figures are the client's (and the bare server's) share. Metrics: rt/s (or req/s), the
// activities recorded per operation, and dropped/op (activities the register dropped because
// the sink fell behind; should be 0). hack/load and hack/bench.sh measure the same paths
// against the `parley run` binary; docs/performance.md has the figures.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/rules"
)

// benchSpec is the spec of hack/load/bench-rules.yaml; the UDP one differs in transport.
const benchSpec = `
operation:
  mode: Server
  transport: %TRANSPORT%
  ip: 127.0.0.1
  port: 16379
  identifyBy: Address
  interactionTimeout: 0s
  maxConcurrentConnections: 20000
  connectionQueue: 4096
conversation:
  greetings: {value: "+OK ready\r\n"}
  rules:
  - {id: 1, mode: Sync, regex: "PING", response: "+PONG\r\n"}
`

const (
	benchGreeting = "+OK ready\r\n"
	benchPing     = "PING\r\n"
	benchPong     = "+PONG\r\n"
	// benchConns is the number of concurrent connections (or UDP sockets) of every benchmark.
	benchConns = 16
)

// The baseline's replies as byte slices made once: it allocates nothing per input.
var (
	benchGreetingBytes = []byte(benchGreeting)
	benchPongBytes     = []byte(benchPong)
	benchPingWord      = []byte("PING")
)

// benchCountingSink counts activities and drops them: the cost of recording without encoding.
type benchCountingSink struct{ n atomic.Int64 }

func (s *benchCountingSink) Write(batch []*v1alpha1.ActivityRecord) error {
	s.n.Add(int64(len(batch)))
	return nil
}

// benchJSONSink encodes every activity as `parley run -o json` does, into io.Discard.
type benchJSONSink struct {
	n   atomic.Int64
	enc *activity.JSONSink
}

func (s *benchJSONSink) Write(batch []*v1alpha1.ActivityRecord) error {
	s.n.Add(int64(len(batch)))
	return s.enc.Write(batch)
}

// benchTarget is a server under benchmark.
type benchTarget struct {
	addr string
	// stop stops the server and returns the activities written and dropped (parley only).
	stop func() (written, dropped int64)
	// live is how many connections the server holds now.
	live func() int
}

func benchProgram(b *testing.B, transport v1alpha1.Transport) *rules.Program {
	b.Helper()
	var spec v1alpha1.ConversationRulesSpec
	src := bytes.ReplaceAll([]byte(benchSpec), []byte("%TRANSPORT%"), []byte(transport))
	if err := yaml.UnmarshalStrict(src, &spec); err != nil {
		b.Fatalf("spec YAML: %v", err)
	}
	prog, errs := rules.Compile("bench", 1, &spec)
	if len(errs) > 0 {
		b.Fatalf("compile: %v", errs.ToAggregate())
	}
	return prog
}

// startBenchParley runs a connector on a free loopback port with the given sink ("discard"
// or "json").
func startBenchParley(b *testing.B, transport v1alpha1.Transport, sinkKind string) *benchTarget {
	b.Helper()
	return startBenchProgram(b, benchProgram(b, transport), sinkKind)
}

// startBenchProgram serves prog as startBenchParley serves the bench rules.
func startBenchProgram(b *testing.B, prog *rules.Program, sinkKind string) *benchTarget {
	b.Helper()
	var sink activity.Sink
	var count func() int64
	switch sinkKind {
	case "discard":
		s := &benchCountingSink{}
		sink, count = s, s.n.Load
	case "json":
		s := &benchJSONSink{enc: activity.NewJSONSink(io.Discard)}
		sink, count = s, s.n.Load
	default:
		b.Fatalf("unknown sink %q", sinkKind)
	}
	reg := activity.NewRegister(sink, 0, nil)
	go reg.Run()
	ip, port := "127.0.0.1", 0
	c, err := connector.New(prog, connector.Options{
		Name: "bench", Register: reg, IP: &ip, Port: &port,
		UDPPeerRate: -1, // no per-peer limit, as `parley run --udp-peer-rate 0`
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-c.Ready():
	case err := <-done:
		b.Fatalf("connector stopped before serving: %v", err)
	case <-time.After(10 * time.Second):
		b.Fatal("connector not ready")
	}
	return &benchTarget{addr: c.Addr().String(), live: func() int { return c.Stats().Active }, stop: func() (int64, int64) {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
		fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer fcancel()
		if err := reg.Close(fctx); err != nil {
			b.Error(err)
		}
		return count(), int64(reg.Stats().Dropped)
	}}
}

// startBenchBaseline runs the bare server of hack/load's serve-baseline in-process.
func startBenchBaseline(b *testing.B, transport v1alpha1.Transport) *benchTarget {
	b.Helper()
	var wg sync.WaitGroup
	if transport == v1alpha1.TransportUDP {
		pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() { benchBaselineUDP(pc) })
		return &benchTarget{addr: pc.LocalAddr().String(), stop: func() (int64, int64) {
			_ = pc.Close()
			wg.Wait()
			return 0, 0
		}}
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[conn] = true
			mu.Unlock()
			wg.Go(func() {
				benchBaselineTCP(conn)
				mu.Lock()
				delete(conns, conn)
				mu.Unlock()
			})
		}
	})
	live := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(conns)
	}
	return &benchTarget{addr: ln.Addr().String(), live: live, stop: func() (int64, int64) {
		_ = ln.Close()
		mu.Lock()
		for conn := range conns {
			_ = conn.Close()
		}
		mu.Unlock()
		wg.Wait()
		return 0, 0
	}}
}

// benchBaselineTCP serves one connection: greeting, then one read of at most 1024 bytes is
// one input, and an input containing PING gets PONG.
func benchBaselineTCP(conn net.Conn) {
	defer conn.Close()
	if _, err := conn.Write(benchGreetingBytes); err != nil {
		return
	}
	buf := make([]byte, 1024)
	for {
		n, err := conn.Read(buf)
		if n > 0 && bytes.Contains(buf[:n], benchPingWord) {
			if _, err := conn.Write(benchPongBytes); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// benchBaselineUDP is one read loop; a peer's first datagram gets the greeting first.
func benchBaselineUDP(pc *net.UDPConn) {
	seen := map[netip.AddrPort]bool{}
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !seen[from] {
			seen[from] = true
			_, _ = pc.WriteToUDPAddrPort(benchGreetingBytes, from)
		}
		if bytes.Contains(buf[:min(n, 1024)], benchPingWord) {
			_, _ = pc.WriteToUDPAddrPort(benchPongBytes, from)
		}
	}
}

// benchServers runs fn against the baseline and against the connector with each sink.
func benchServers(b *testing.B, transport v1alpha1.Transport, fn func(b *testing.B, addr string)) {
	b.Run("baseline", func(b *testing.B) {
		t := startBenchBaseline(b, transport)
		fn(b, t.addr)
		t.stop()
	})
	for _, sink := range []string{"discard", "json"} {
		b.Run("parley/"+sink, func(b *testing.B) {
			t := startBenchParley(b, transport, sink)
			fn(b, t.addr)
			b.StopTimer()
			written, dropped := t.stop()
			b.ReportMetric(float64(written)/float64(b.N), "activities/op")
			b.ReportMetric(float64(dropped)/float64(b.N), "dropped/op")
		})
	}
}

// benchParallelism makes RunParallel use benchConns goroutines (rounded up to a multiple of
// GOMAXPROCS) and returns how many it will start.
func benchParallelism(b *testing.B) int {
	procs := runtime.GOMAXPROCS(0)
	p := (benchConns + procs - 1) / procs
	b.SetParallelism(p)
	return p * procs
}

func benchExpect(conn net.Conn, buf []byte, want string) error {
	buf = buf[:len(want)]
	if _, err := io.ReadFull(conn, buf); err != nil {
		return err
	}
	if string(buf) != want {
		return errors.New("got " + string(buf) + ", want " + want)
	}
	return nil
}

// BenchmarkTCPRoundTrip: PING/PONG round trips over 16 persistent connections, opened and
// greeted before the timer starts.
func BenchmarkTCPRoundTrip(b *testing.B) {
	benchServers(b, v1alpha1.TransportTCP, benchRoundTrips)
}

// BenchmarkTCPRoundTripFraming: the round trips of BenchmarkTCPRoundTrip against the same
// rules read as Lope reads them (one read, one input) and with Delimiter framing on "\r\n",
// in one run, so their ratio says what framing costs (docs/performance.md).
func BenchmarkTCPRoundTripFraming(b *testing.B) {
	for _, tc := range []struct{ name, framing string }{
		{"read", ""},
		{"delimiter", `{type: Delimiter, delimiter: "\r\n"}`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			prog := benchProgram(b, v1alpha1.TransportTCP)
			if tc.framing != "" {
				var f v1alpha1.Framing
				if err := yaml.UnmarshalStrict([]byte(tc.framing), &f); err != nil {
					b.Fatal(err)
				}
				spec := v1alpha1.ConversationRulesSpec{}
				src := bytes.ReplaceAll([]byte(benchSpec), []byte("%TRANSPORT%"), []byte(v1alpha1.TransportTCP))
				if err := yaml.UnmarshalStrict(src, &spec); err != nil {
					b.Fatal(err)
				}
				spec.Operation.Framing = &f
				var errs field.ErrorList
				if prog, errs = rules.Compile("bench", 1, &spec); len(errs) > 0 {
					b.Fatal(errs.ToAggregate())
				}
			}
			t := startBenchProgram(b, prog, "discard")
			benchRoundTrips(b, t.addr)
			b.StopTimer()
			t.stop()
		})
	}
}

// benchRoundTrips runs PING/PONG round trips against addr over persistent connections.
func benchRoundTrips(b *testing.B, addr string) {
	{
		n := benchParallelism(b)
		conns := make(chan net.Conn, n)
		buf := make([]byte, 64)
		for range n {
			conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(time.Minute))
			if err := benchExpect(conn, buf, benchGreeting); err != nil {
				b.Fatal(err)
			}
			conns <- conn
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			conn := <-conns
			buf := make([]byte, 64)
			req := []byte(benchPing)
			for pb.Next() {
				if _, err := conn.Write(req); err != nil {
					b.Error(err)
					return
				}
				if err := benchExpect(conn, buf, benchPong); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rt/s")
	}
}

// BenchmarkTCPConnectPerRequest: connect, read the greeting, PING/PONG, close, from 16
// goroutines. The client closes with SO_LINGER 0 (RST), as hack/load's cpr does, so that
// no TIME_WAIT sockets pile up on loopback; the connector records the end as Broken.
func BenchmarkTCPConnectPerRequest(b *testing.B) {
	benchServers(b, v1alpha1.TransportTCP, func(b *testing.B, addr string) {
		benchParallelism(b)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			buf := make([]byte, 64)
			req := []byte(benchPing)
			d := net.Dialer{Timeout: 10 * time.Second}
			for pb.Next() {
				if err := benchConnectOnce(&d, addr, buf, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	})
}

func benchConnectOnce(d *net.Dialer, addr string, buf, req []byte) error {
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	tc := conn.(*net.TCPConn)
	_ = tc.SetLinger(0)
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := benchExpect(tc, buf, benchGreeting); err != nil {
		return err
	}
	if _, err := tc.Write(req); err != nil {
		return err
	}
	return benchExpect(tc, buf, benchPong)
}

// BenchmarkUDPRoundTrip: PING/PONG datagrams from 16 sockets, each its own conversation.
// The first exchange of each socket (greeting, then PONG) happens before the timer starts. A
// PONG not back within 1s counts as lost (lost/op; should be 0 on loopback); three in a row
// fail the benchmark.
func BenchmarkUDPRoundTrip(b *testing.B) {
	benchServers(b, v1alpha1.TransportUDP, func(b *testing.B, addr string) {
		n := benchParallelism(b)
		raddr, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns := make(chan *net.UDPConn, n)
		buf := make([]byte, 2048)
		for range n {
			conn, err := net.DialUDP("udp4", nil, raddr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte(benchPing)); err != nil {
				b.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			for _, want := range []string{benchGreeting, benchPong} {
				m, err := conn.Read(buf)
				if err != nil || string(buf[:m]) != want {
					b.Fatalf("first contact: got %q (%v), want %q", buf[:m], err, want)
				}
			}
			conns <- conn
		}
		var lost atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			conn := <-conns
			buf := make([]byte, 2048)
			req := []byte(benchPing)
			inARow := 0
			for pb.Next() {
				if _, err := conn.Write(req); err != nil {
					b.Error(err)
					return
				}
				_ = conn.SetReadDeadline(time.Now().Add(time.Second))
				m, err := conn.Read(buf)
				if err == nil {
					inARow = 0
				}
				switch {
				case errors.Is(err, os.ErrDeadlineExceeded):
					lost.Add(1)
					if inARow++; inARow == 3 {
						// Not loss: the server stopped answering this socket (refused as
						// Rejected, say). Fail rather than wait a second per operation.
						b.Errorf("3 PINGs in a row unanswered after %d lost in all", lost.Load())
						return
					}
				case err != nil:
					b.Error(err)
					return
				case string(buf[:m]) != benchPong:
					b.Errorf("got %q, want %q", buf[:m], benchPong)
					return
				}
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rt/s")
		b.ReportMetric(float64(lost.Load())/float64(b.N), "lost/op")
	})
}

// BenchmarkIdleConnection opens connections (each reads its greeting) and holds them, in
// batches of 1000, and reports the Go heap and goroutine stacks in use per connection after
// a GC: heap-B/conn and stack-B/conn. Client and server share the process, so the baseline's
// figures are the client's share plus a bare server's; hack/load idle measures the server's
// VmRSS alone.
func BenchmarkIdleConnection(b *testing.B) {
	run := func(b *testing.B, t *benchTarget) {
		addr := t.addr
		const batch = 1000
		var heap, stack int64
		buf := make([]byte, 64)
		for done := 0; done < b.N; {
			k := min(batch, b.N-done)
			b.StopTimer()
			before := benchMemStats()
			b.StartTimer()
			conns := make([]net.Conn, 0, k)
			for range k {
				conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				conns = append(conns, conn)
				_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				if err := benchExpect(conn, buf, benchGreeting); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			after := benchMemStats()
			heap += int64(after.HeapInuse) - int64(before.HeapInuse)
			stack += int64(after.StackInuse) - int64(before.StackInuse)
			for _, conn := range conns {
				_ = conn.Close()
			}
			// Let the server forget them before the next batch is measured (by its own
			// count: the goroutines that served them may stay, idle, for the next ones).
			for deadline := time.Now().Add(10 * time.Second); t.live() > 0 && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			b.StartTimer()
			done += k
		}
		b.ReportMetric(float64(heap)/float64(b.N), "heap-B/conn")
		b.ReportMetric(float64(stack)/float64(b.N), "stack-B/conn")
	}
	b.Run("baseline", func(b *testing.B) {
		t := startBenchBaseline(b, v1alpha1.TransportTCP)
		run(b, t)
		t.stop()
	})
	b.Run("parley/discard", func(b *testing.B) {
		t := startBenchParley(b, v1alpha1.TransportTCP, "discard")
		run(b, t)
		b.StopTimer()
		t.stop()
	})
}

// BenchmarkUnverifiedDTLSHandshake sends DTLS ClientHellos from as many sources
// (127.5.x.y), in batches of up to 1000 on a DTLS server of its own each, every source
// reading the HelloVerifyRequest it is answered with and never returning the cookie (a
// spoofed flood, whose sources would never see it), and reports what the handshakes
// waiting for their cookie hold, after a GC: heap-B/handshake (live heap),
// stack-B/handshake and goroutines/handshake (docs/hardening.md §1; hack/hostile dtls-hellos measures the
// server's VmRSS alone). The sources' sockets are closed before the measure; their cookie
// deadline is lengthened so that no handshake is given up while measured.
func BenchmarkUnverifiedDTLSHandshake(b *testing.B) {
	ca := newCA(b, "parley-bench")
	cert := ca.issue("server", false, false).pair(b)
	prog := connectortest.Compile(b, `
operation: {port: 1, transport: UDP, tls: {enabled: true}, identifyBy: Address, maxConcurrentConnections: 1000}
conversation:
  greetings: {value: "+OK secure\n"}
`)
	const batch = 1000
	var heap, stack, goroutines int64
	buf := make([]byte, 2048)
	for done := 0; done < b.N; {
		k := min(batch, b.N-done)
		b.StopTimer()
		srv := connectortest.Start(b, prog, func(o *connector.Options) {
			o.TLS = &connector.TLS{Certificate: &cert, HandshakeTimeout: time.Hour}
			o.DTLSCookieTimeout = time.Hour
			o.RefusalSummaryInterval = time.Hour
		})
		addr := srv.Connector.Addr().(*net.UDPAddr)
		hello := connectortest.DTLSClientHello()
		g := runtime.NumGoroutine()
		before := benchMemStats()
		b.StartTimer()
		sources := make([]*net.UDPConn, 0, k)
		for i := range k {
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 5, byte(i>>8), byte(i))})
			if err != nil {
				b.Fatal(err)
			}
			sources = append(sources, conn)
			if _, err := conn.WriteToUDP(hello, addr); err != nil {
				b.Fatal(err)
			}
			if i%50 == 49 {
				// Not faster than the server reads, so that the kernel drops none.
				benchHelloVerified(b, sources[i-49:], buf)
			}
		}
		benchHelloVerified(b, sources[k-k%50:], buf)
		b.StopTimer()
		for _, conn := range sources {
			_ = conn.Close()
		}
		after := benchMemStats()
		if st := srv.Connector.Stats(); st.Handshakes != k {
			b.Fatalf("%d handshakes under way, want %d: %+v", st.Handshakes, k, st)
		}
		heap += int64(after.HeapAlloc) - int64(before.HeapAlloc)
		stack += int64(after.StackInuse) - int64(before.StackInuse)
		goroutines += int64(runtime.NumGoroutine() - g)
		if err := srv.Stop(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		done += k
	}
	b.ReportMetric(float64(heap)/float64(b.N), "heap-B/handshake")
	b.ReportMetric(float64(stack)/float64(b.N), "stack-B/handshake")
	b.ReportMetric(float64(goroutines)/float64(b.N), "goroutines/handshake")
}

// benchHelloVerified reads the HelloVerifyRequest each source was answered with.
func benchHelloVerified(b *testing.B, sources []*net.UDPConn, buf []byte) {
	b.Helper()
	for _, conn := range sources {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			b.Fatal(err)
		}
		if n < 14 || buf[0] != 22 || buf[13] != 3 { // handshake record, HelloVerifyRequest
			b.Fatalf("answered % x, not a HelloVerifyRequest", buf[:min(n, 16)])
		}
	}
}

// benchMemStats collects garbage (twice, so that finalizers and the activities the register
// has handed on are gone) and reads the memory statistics.
func benchMemStats() runtime.MemStats {
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}

// benchRuleSpecs are one rule written without CEL and with it (a when and a {{= }} piece):
// the same reply for the same work, to weigh what CEL costs per input.
var benchRuleSpecs = map[string]string{
	"plain": `
operation: {port: 1, interactionTimeout: 0s, maxConcurrentConnections: 64}
memory: {connection: [{name: num, type: int, default: "3"}]}
conversation:
  greetings: {value: "+OK ready\r\n"}
  rules:
  - {id: 1, mode: Sync, regex: "PING", conditions: [{variable: num, value: "3"}], response: "+PONG {{num}}\r\n"}
`,
	"cel": `
operation: {port: 1, interactionTimeout: 0s, maxConcurrentConnections: 64}
memory: {connection: [{name: num, type: int, default: "3"}]}
conversation:
  greetings: {value: "+OK ready\r\n"}
  rules:
  - {id: 1, mode: Sync, regex: "PING", when: "num == 3", response: "+PONG {{= num }}\r\n"}
`,
}

// BenchmarkCELRule: PING round trips over 16 persistent connections answered by the rule of
// benchRuleSpecs, without CEL and with it, in one run (docs/performance.md: cel ≥ 0.75× plain).
func BenchmarkCELRule(b *testing.B) {
	for _, name := range []string{"plain", "cel"} {
		b.Run(name, func(b *testing.B) {
			var spec v1alpha1.ConversationRulesSpec
			if err := yaml.UnmarshalStrict([]byte(benchRuleSpecs[name]), &spec); err != nil {
				b.Fatal(err)
			}
			prog, errs := rules.Compile("bench", 1, &spec)
			if len(errs) > 0 {
				b.Fatal(errs.ToAggregate())
			}
			target := startBenchProgram(b, prog, "discard")
			defer target.stop()
			n := benchParallelism(b)
			conns := make(chan net.Conn, n)
			buf := make([]byte, 64)
			for range n {
				conn, err := net.DialTimeout("tcp", target.addr, 10*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(time.Minute))
				if err := benchExpect(conn, buf, benchGreeting); err != nil {
					b.Fatal(err)
				}
				conns <- conn
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				conn := <-conns
				buf := make([]byte, 64)
				req := []byte(benchPing)
				for pb.Next() {
					if _, err := conn.Write(req); err != nil {
						b.Error(err)
						return
					}
					if err := benchExpect(conn, buf, "+PONG 3\r\n"); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rt/s")
		})
	}
}

// benchManyRulesSpec is benchSpec with n rules: n-1 unanchored regexes the input does not
// match (`CMD0001` ...), then PING, so that every regex ahead of the one that fires is
// looked at (docs/performance.md: 1000 rules ≥ 0.8× one rule).
func benchManyRulesSpec(n int) string {
	var b strings.Builder
	b.WriteString(strings.TrimSuffix(benchSpec, "  - {id: 1, mode: Sync, regex: \"PING\", response: \"+PONG\\r\\n\"}\n"))
	for id := 1; id < n; id++ {
		fmt.Fprintf(&b, "  - {id: %d, mode: Sync, regex: \"CMD%04d\", response: \"+OK\\r\\n\"}\n", id, id)
	}
	fmt.Fprintf(&b, "  - {id: %d, mode: Sync, regex: \"PING\", response: \"+PONG\\r\\n\"}\n", n)
	return strings.ReplaceAll(b.String(), "%TRANSPORT%", string(v1alpha1.TransportTCP))
}

// BenchmarkTCPRoundTripRules: the round trips of BenchmarkTCPRoundTrip against one rule and
// against 1000 rules whose last one answers, in one run.
func BenchmarkTCPRoundTripRules(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			var spec v1alpha1.ConversationRulesSpec
			if err := yaml.UnmarshalStrict([]byte(benchManyRulesSpec(n)), &spec); err != nil {
				b.Fatal(err)
			}
			prog, errs := rules.Compile("bench", 1, &spec)
			if len(errs) > 0 {
				b.Fatal(errs.ToAggregate())
			}
			if len(prog.Rules) != n {
				b.Fatalf("%d rules, want %d", len(prog.Rules), n)
			}
			t := startBenchProgram(b, prog, "discard")
			benchRoundTrips(b, t.addr)
			b.StopTimer()
			t.stop()
		})
	}
}
