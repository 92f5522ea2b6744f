package pod_test

// The pod process runs in the test's process against uplinktest.Engine, an in-process gRPC
// server over real TLS standing in for the operator's engine (which has its own tests
// against envtest); peers are real TCP clients and servers on loopback. cmd/parley's tests
// run the binary, for its flags and signals.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"go.uber.org/goleak"

	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/connector/pod"
	"github.com/parley-dev/parley/connector/uplink/uplinktest"
	"github.com/parley-dev/parley/internal/freeport"
)

const engineToken = "t0ken"

// connectorProc is a running pod process.
type connectorProc struct {
	out    *connectortest.Output
	cancel context.CancelFunc // as SIGTERM
	exited chan struct{}
	err    error
}

// startConnector runs the pod process against e with the options the operator's pods get,
// changed by tweak.
func startConnector(t *testing.T, e *uplinktest.Engine, tweak ...func(*pod.Options)) *connectorProc {
	t.Helper()
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(token, []byte(engineToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, e.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	p := &connectorProc{out: &connectortest.Output{}, exited: make(chan struct{})}
	o := pod.Options{
		EngineAddress: e.Addr(), EngineServerName: uplinktest.ServerName,
		Connector: "decoy", Namespace: "ns", Pod: "decoy-0",
		TokenFile: token, EngineCAFile: ca,
		TLSDir: filepath.Join(dir, "none"), TLSClientCADir: filepath.Join(dir, "none"),
		MetricsAddress: "0", EndTimeout: 15 * time.Second, Version: "test",
		Logger: funcr.New(func(prefix, args string) { fmt.Fprintln(p.out, prefix, args) }, funcr.Options{Verbosity: 1}),
	}
	for _, f := range tweak {
		f(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() {
		p.err = pod.Run(ctx, o)
		close(p.exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.exited
		if t.Failed() {
			t.Logf("pod process log:\n%s", p.out)
		}
	})
	return p
}

// wait returns what the process returned.
func (p *connectorProc) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(uplinktest.Wait):
		t.Fatal("the pod process did not end")
	}
	return p.err
}

func (p *connectorProc) waitLog(t *testing.T, what string) {
	t.Helper()
	uplinktest.Eventually(t, "log line "+strconv.Quote(what), func() bool { return strings.Contains(p.out.String(), what) })
}

func pingerSpec(reply string) string {
	// identifyBy: Address: each socket from loopback is a conversation of its own, rather than
	// joining the live one of the same peer IP.
	return `
operation: {port: 7000, identifyBy: Address}
conversation:
  greetings: {value: "+OK ready\r\n"}
  ending: {value: "+OK bye\r\n"}
  rules: [{id: 1, mode: Sync, regex: "PING", response: "` + reply + `\r\n"}]
`
}

// peer is a third party talking to the connector.
type peer struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// dial connects once the connector listens, and reads its greeting.
func dial(t *testing.T, port int) *peer {
	t.Helper()
	var c net.Conn
	var err error
	uplinktest.Eventually(t, fmt.Sprintf("the connector to listen on %d", port), func() bool {
		c, err = net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		return err == nil
	})
	t.Cleanup(func() { c.Close() })
	p := &peer{t: t, c: c, r: bufio.NewReader(c)}
	if got := p.line(); got != "+OK ready\r\n" {
		t.Fatalf("greeting %q", got)
	}
	return p
}

func (p *peer) line() string {
	p.t.Helper()
	_ = p.c.SetReadDeadline(time.Now().Add(uplinktest.Wait))
	s, err := p.r.ReadString('\n')
	if err != nil {
		p.t.Fatalf("read after %q: %v", s, err)
	}
	return s
}

func (p *peer) ask(q string) string {
	p.t.Helper()
	if _, err := io.WriteString(p.c, q+"\r\n"); err != nil {
		p.t.Fatal(err)
	}
	return p.line()
}

// ended checks that the connection receives the ending rule's text, then closes.
func (p *peer) ended() {
	p.t.Helper()
	if got := p.line(); got != "+OK bye\r\n" {
		p.t.Fatalf("got %q, want the ending rule's text", got)
	}
	_ = p.c.SetReadDeadline(time.Now().Add(uplinktest.Wait))
	if rest, err := p.r.ReadString('\n'); err != io.EOF {
		p.t.Fatalf("after the ending: %q, %v; want EOF", rest, err)
	}
}

type act struct {
	seq uint64
	v1alpha1.ActivityRecord
}

func activities(t *testing.T, e *uplinktest.Engine) []act {
	t.Helper()
	var out []act
	for seq, raw := range e.Activities() {
		a := act{seq: seq}
		if err := json.Unmarshal(raw, &a.ActivityRecord); err != nil {
			t.Fatalf("activity %d: %v", seq, err)
		}
		out = append(out, a)
	}
	return out
}

func count(acts []act, typ v1alpha1.ActivityType, match func(act) bool) int {
	n := 0
	for _, a := range acts {
		if a.Type == typ && (match == nil || match(a)) {
			n++
		}
	}
	return n
}

// checkByeCoversEverything verifies the single Bye and that activities 1..last_seq arrived.
func checkByeCoversEverything(t *testing.T, e *uplinktest.Engine, reason string) []act {
	t.Helper()
	byes := e.Byes()
	if len(byes) != 1 || !strings.Contains(byes[0].GetReason(), reason) {
		t.Fatalf("byes %v, want one saying %q", byes, reason)
	}
	acts := activities(t, e)
	if uint64(len(acts)) != byes[0].GetLastSeq() {
		t.Fatalf("%d activities received, Bye says the last is %d", len(acts), byes[0].GetLastSeq())
	}
	if n := count(acts, v1alpha1.ActivityConnectorStopped, nil); n == 0 {
		t.Fatal("no ConnectorStopped activity before Bye")
	}
	return acts
}

func TestExitsWithoutConfig(t *testing.T) {
	e := uplinktest.New(t)
	e.SetToken(engineToken)
	began := time.Now()
	p := startConnector(t, e, func(o *pod.Options) { o.ConfigTimeout = time.Second })
	err := p.wait(t)
	if err == nil {
		t.Fatal("no error without a Config")
	}
	if d := time.Since(began); d < time.Second {
		t.Errorf("exited after %v, before ConfigTimeout", d)
	}
	if !strings.Contains(err.Error(), "no usable Config from the engine at "+e.Addr()+" within 1s") {
		t.Errorf("the error lacks the reason: %v", err)
	}
	if out := p.out.String(); !strings.Contains(out, "no usable Config from the engine at "+e.Addr()+" within 1s") {
		t.Errorf("the log lacks the reason:\n%s", out)
	}
	// What the Hello says is checked in TestNotReadyBeforeTheRules, which waits for it: here
	// the process may give up before its first dial is through on a loaded machine.
}

func TestServesFollowsRulesAndEnds(t *testing.T) {
	e := uplinktest.New(t)
	e.SetToken(engineToken)
	port, metricsPort := freeport.T(t), freeport.T(t)
	e.SetConfig(uplinktest.Config(t, pingerSpec("+PONG"), "pinger", 1, port))
	p := startConnector(t, e, func(o *pod.Options) { o.MetricsAddress = "127.0.0.1:" + strconv.Itoa(metricsPort) })

	first := dial(t, port)
	if got := first.ask("PING"); got != "+PONG\r\n" {
		t.Fatalf("reply %q", got)
	}
	if code, body := get(t, metricsPort, v1alpha1.ReadinessPath); code != http.StatusOK {
		t.Errorf("serving and connected, /readyz answers %d %q", code, body)
	}
	uplinktest.Eventually(t, "the Input activity at the engine", func() bool {
		return count(activities(t, e), v1alpha1.ActivityInput, func(a act) bool {
			return a.Input != nil && strings.HasPrefix(a.Input.Text, "PING") && a.RulesRef != nil && a.RulesRef.Generation == 1 &&
				a.Connector == "decoy" && a.Rules != nil && len(a.Rules.Executed) == 1
		}) == 1
	})

	// New rules: new connections use them at once, the live one keeps its own.
	e.SetConfig(uplinktest.Config(t, pingerSpec("+PONG v2"), "pinger", 2, port))
	p.waitLog(t, "rules updated")
	second := dial(t, port)
	if got := second.ask("PING"); got != "+PONG v2\r\n" {
		t.Fatalf("new connection after the new Config: %q", got)
	}
	if got := first.ask("PING"); got != "+PONG\r\n" {
		t.Fatalf("live connection after the new Config: %q, want its own rules' reply", got)
	}

	// A Config whose hash does not match its spec is refused; the running rules stay.
	bad := uplinktest.Config(t, pingerSpec("+PONG v3"), "pinger", 3, port)
	bad.Hash = "sha256:0000"
	e.SetConfig(bad)
	p.waitLog(t, "Config rejected")
	if got := dial(t, port).ask("PING"); got != "+PONG v2\r\n" {
		t.Fatalf("after a rejected Config: %q", got)
	}

	uplinktest.Eventually(t, "a heartbeat counting the connections", func() bool {
		hbs := e.Heartbeats()
		return len(hbs) > 0 && hbs[len(hbs)-1].GetTotalConnections() == 3 && hbs[len(hbs)-1].GetActiveConnections() == 3
	})
	metrics := scrape(t, metricsPort)
	for _, want := range []string{
		"parley_connector_connections_active 3", "parley_connector_connections_total 3",
		"parley_connector_inputs_total 4", "parley_connector_rules_fired_total 4",
		"parley_connector_connections_rejected_total 0", "parley_connector_activities_dropped_total 0",
		"parley_connector_engine_connected 1",
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	for _, name := range []string{"parley_connector_activities_produced_total", "parley_connector_engine_activities_sent_total",
		"parley_connector_engine_activities_acked_total", "parley_connector_engine_buffered_activities", "parley_connector_engine_reconnects_total"} {
		if !strings.Contains(metrics, "\n"+name+" ") {
			t.Errorf("metrics lack %s", name)
		}
	}

	if e.Order(enginev1.Order_END, "connector deleted") != 1 {
		t.Fatal("no stream to order")
	}
	first.ended()
	second.ended()
	if err := p.wait(t); err != nil {
		t.Fatalf("after END: %v", err)
	}
	acts := checkByeCoversEverything(t, e, "END order: connector deleted")
	if n := count(acts, v1alpha1.ActivityInput, nil); n != 4 {
		t.Errorf("%d Input activities, want 4", n)
	}
	if n := count(acts, v1alpha1.ActivityConnected, nil); n != 3 {
		t.Errorf("%d Connected activities, want 3", n)
	}
	if hs := e.Hellos(); len(hs) != 1 {
		t.Errorf("%d Hellos: the stream should have stayed up", len(hs))
	}
}

// A pod is not ready until it is connected to the engine and serves its rules: before the
// engine sends a Config, /readyz says why; /healthz answers all along.
func TestNotReadyBeforeTheRules(t *testing.T) {
	e := uplinktest.New(t)
	e.SetToken(engineToken)
	metricsPort := freeport.T(t)
	startConnector(t, e, func(o *pod.Options) {
		o.MetricsAddress = "127.0.0.1:" + strconv.Itoa(metricsPort)
		o.ConfigTimeout = time.Minute
	})
	uplinktest.Eventually(t, "a stream to the engine", func() bool { return len(e.Hellos()) > 0 })
	if h := e.Hellos()[0]; h.GetConnector() != "decoy" || h.GetNamespace() != "ns" || h.GetPod() != "decoy-0" || h.GetToken() != engineToken ||
		len(h.GetRun()) != 8 || h.GetRulesHash() != "" || h.GetVersion() == "" {
		t.Errorf("hello %v", h)
	}
	var code int
	var body string
	uplinktest.Eventually(t, "/readyz answers", func() bool {
		code, body = get(t, metricsPort, v1alpha1.ReadinessPath)
		return code != 0
	})
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no rules from the engine yet") {
		t.Errorf("/readyz without rules: %d %q", code, body)
	}
	if code, _ := get(t, metricsPort, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d", code)
	}
}

// get returns the status and body of GET path on the local port; 0 if nothing answers.
func get(t *testing.T, port int, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func scrape(t *testing.T, port int) string {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRestartsOnNewNetworkSettingsAndEndsWhenTheContextIs(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	e := uplinktest.New(t)
	e.SetToken(engineToken)
	port, port2 := freeport.T(t), freeport.T(t)
	e.SetConfig(uplinktest.Config(t, pingerSpec("+PONG"), "pinger", 1, port))
	p := startConnector(t, e)
	first := dial(t, port)

	e.SetConfig(uplinktest.Config(t, pingerSpec("+PONG v2"), "pinger", 2, port2))
	first.ended() // the old connector ends its conversations gracefully
	p.waitLog(t, "network settings changed")
	second := dial(t, port2)
	if got := second.ask("PING"); got != "+PONG v2\r\n" {
		t.Fatalf("reply on the new port: %q", got)
	}
	if c, err := net.DialTimeout("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second); err == nil {
		c.Close()
		t.Fatal("the old port still accepts connections")
	}

	p.cancel() // as SIGTERM does
	second.ended()
	if err := p.wait(t); err != nil {
		t.Fatalf("after the context ended: %v", err)
	}
	acts := checkByeCoversEverything(t, e, "the pod is stopping: context canceled")
	if n := count(acts, v1alpha1.ActivityConnectorStarted, nil); n != 2 {
		t.Errorf("%d ConnectorStarted, want 2 (one per network settings)", n)
	}
	e.Stop() // its goroutines are not the pod's
}

func TestPauseAndResumeOrders(t *testing.T) {
	e := uplinktest.New(t)
	e.SetToken(engineToken)
	port := freeport.T(t)
	e.SetConfig(uplinktest.Config(t, pingerSpec("+PONG"), "pinger", 1, port))
	p := startConnector(t, e)
	live := dial(t, port)

	e.Order(enginev1.Order_PAUSE, "spec.paused")
	uplinktest.Eventually(t, "a refused connection", func() bool {
		c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := bufio.NewReader(c).ReadString('\n')
		return b == "" && err == io.EOF
	})
	if got := live.ask("PING"); got != "+PONG\r\n" {
		t.Fatalf("live connection while paused: %q", got)
	}
	uplinktest.Eventually(t, "a heartbeat saying paused", func() bool {
		hbs := e.Heartbeats()
		return len(hbs) > 0 && hbs[len(hbs)-1].GetPaused() && hbs[len(hbs)-1].GetRejectedConnections() > 0
	})
	e.Order(enginev1.Order_RESUME, "spec.paused unset")
	uplinktest.Eventually(t, "an accepted connection", func() bool {
		c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := bufio.NewReader(c).ReadString('\n')
		return b == "+OK ready\r\n"
	})
	e.Order(enginev1.Order_END, "done")
	live.ended()
	if err := p.wait(t); err != nil {
		t.Fatal(err)
	}
	if n := count(checkByeCoversEverything(t, e, "END order"), v1alpha1.ActivityRejected, nil); n == 0 {
		t.Error("no Rejected activity while paused")
	}
}

func TestClientModeEndsWhenConversationsEnd(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	heard := make(chan string, 4)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				close(heard)
				return
			}
			heard <- strings.TrimSpace(line)
			if strings.HasPrefix(line, "HELLO") {
				fmt.Fprint(c, "WELCOME\n")
			}
		}
	}()
	e := uplinktest.New(t)
	e.SetToken(engineToken)
	e.SetConfig(uplinktest.Config(t, fmt.Sprintf(`
operation: {mode: Client, ip: 127.0.0.1, port: %d, maxConcurrentConnections: 1}
conversation:
  greetings: {value: "HELLO\n"}
  ending: {value: "QUIT\n"}
  rules: [{id: 1, mode: Sync, regex: "WELCOME", ending: true}]
`, ln.Addr().(*net.TCPAddr).Port), "pinger", 1, 0))
	p := startConnector(t, e)
	if err := p.wait(t); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for done := false; !done; {
		select {
		case l, ok := <-heard:
			lines, done = append(lines, l), !ok
		case <-time.After(uplinktest.Wait):
			t.Fatalf("the target's connection did not end; heard %v", lines)
		}
	}
	lines = lines[:len(lines)-1] // the zero value of the closed channel
	if strings.Join(lines, "|") != "HELLO|QUIT" {
		t.Errorf("the target heard %v", lines)
	}
	acts := checkByeCoversEverything(t, e, "client conversations ended")
	if n := count(acts, v1alpha1.ActivityEnded, nil); n != 1 {
		t.Errorf("%d Ended activities", n)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key as a kubernetes.io/tls Secret
// is mounted, and returns a pool trusting it.
func selfSigned(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "decoy"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for name, data := range map[string][]byte{
		"tls.crt": certPEM,
		"tls.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return pool
}

func TestServesTLSFromTheMountedSecret(t *testing.T) {
	e := uplinktest.New(t)
	e.SetToken(engineToken)
	port := freeport.T(t)
	tlsSpec := strings.Replace(pingerSpec("+PONG"), "identifyBy: Address}", "identifyBy: Address, tls: {enabled: true}}", 1)
	// Without the Secret's files the Config is refused, not run into a failure: the process
	// says why and stays up, waiting for a usable one, until it is stopped. (Waiting for the
	// refusal rather than for a short --config-timeout to expire: on a loaded machine the
	// first dial alone may take longer than such a timeout.)
	e.SetConfig(uplinktest.Config(t, tlsSpec, "pinger", 1, port))
	empty := startConnector(t, e)
	empty.waitLog(t, "no tls.crt and tls.key in")
	select {
	case <-empty.exited:
		t.Fatalf("exited after the refused Config: %v", empty.err)
	default:
	}
	empty.cancel()
	if err := empty.wait(t); err != nil {
		t.Fatalf("stopped after a refused Config: %v", err)
	}

	tlsDir := filepath.Join(t.TempDir(), "tls")
	pool := selfSigned(t, tlsDir)
	p := startConnector(t, e, func(o *pod.Options) { o.TLSDir = tlsDir })
	var c *tls.Conn
	uplinktest.Eventually(t, "a TLS handshake", func() bool {
		var err error
		c, err = tls.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
		return err == nil
	})
	tp := &peer{t: t, c: c, r: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	if got := tp.line(); got != "+OK ready\r\n" {
		t.Fatalf("greeting over TLS %q", got)
	}
	if got := tp.ask("PING"); got != "+PONG\r\n" {
		t.Fatalf("reply over TLS %q", got)
	}
	e.Order(enginev1.Order_END, "done")
	tp.ended()
	if err := p.wait(t); err != nil {
		t.Fatal(err)
	}
}

// TestEndTimeoutCutsWhatDidNotEnd: a peer that does not read holds its conversation's
// greeting, too large for the sockets' buffers, past the end timeout. The process then cuts
// the connector (Close) rather than leave it running, and returns with nothing of it left.
func TestEndTimeoutCutsWhatDidNotEnd(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	e := uplinktest.New(t)
	e.SetToken(engineToken)
	port := freeport.T(t)
	e.SetConfig(uplinktest.Config(t, `
operation: {port: 7000}
memory: {connection: [{name: blob, type: string, default: "`+strings.Repeat("x", 32<<10)+`"}]}
conversation:
  greetings: {value: "`+strings.Repeat("{{blob}}", 256)+`"}
  ending: {value: "bye"}
`, "pinger", 1, port))
	p := startConnector(t, e, func(o *pod.Options) { o.EndTimeout = time.Second })
	var c net.Conn
	uplinktest.Eventually(t, "the connector to listen", func() bool {
		var err error
		c, err = net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		return err == nil
	})
	t.Cleanup(func() { c.Close() }) // after the check for goroutines: the peer never reads
	uplinktest.Eventually(t, "the Connected activity at the engine", func() bool {
		return count(activities(t, e), v1alpha1.ActivityConnected, nil) == 1
	})

	e.Order(enginev1.Order_END, "connector deleted")
	if err := p.wait(t); err != nil {
		t.Fatal(err)
	}
	if out := p.out.String(); !strings.Contains(out, "live conversations did not end in time: cutting them") {
		t.Errorf("the log does not say the conversation was cut:\n%s", out)
	}
	e.Stop() // its goroutines are not the pod's
}

// With HoldAfterEnd, a server process carries out End (endings, flush, Bye), then stays, not
// ready, until it is stopped: exiting would make its Deployment restart it.
func TestHoldsAfterEndUntilStopped(t *testing.T) {
	e := uplinktest.New(t)
	e.SetToken(engineToken)
	port, metricsPort := freeport.T(t), freeport.T(t)
	e.SetConfig(uplinktest.Config(t, pingerSpec("+PONG"), "pinger", 1, port))
	p := startConnector(t, e, func(o *pod.Options) {
		o.HoldAfterEnd = true
		o.MetricsAddress = "127.0.0.1:" + strconv.Itoa(metricsPort)
	})
	if got := dial(t, port).ask("PING"); got != "+PONG\r\n" {
		t.Fatalf("reply %q", got)
	}
	if e.Order(enginev1.Order_END, "connector deleted") != 1 {
		t.Fatal("no stream to order")
	}
	p.waitLog(t, "ended: holding until the pod is deleted")
	select {
	case <-p.exited:
		t.Fatalf("exited after END: %v", p.err)
	default:
	}
	checkByeCoversEverything(t, e, "END order: connector deleted")
	if code, body := get(t, metricsPort, v1alpha1.ReadinessPath); code != http.StatusServiceUnavailable || !strings.Contains(body, "End order") {
		t.Errorf("/readyz after END: %d %q", code, body)
	}
	p.cancel()
	if err := p.wait(t); err != nil {
		t.Fatalf("stopped after END: %v", err)
	}
}
