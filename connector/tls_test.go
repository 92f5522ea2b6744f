package connector_test

import (
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/internal/freeport"
)

// openssl is a running `openssl s_client` or `s_server`.
type openssl struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   connectortest.Buffer
}

func (o *openssl) output() string { return o.out.String() }

func runOpenSSL(t *testing.T, args ...string) *openssl {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl not found: install the Debian package openssl")
	}
	o := &openssl{t: t, cmd: exec.Command("openssl", args...)}
	o.cmd.Stdout, o.cmd.Stderr = &o.out, &o.out
	var err error
	if o.stdin, err = o.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := o.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = o.cmd.Process.Kill()
		_ = o.cmd.Wait()
	})
	return o
}

func (o *openssl) send(s string) {
	o.t.Helper()
	if _, err := io.WriteString(o.stdin, s); err != nil {
		o.t.Fatalf("write to openssl: %v; output:\n%s", err, o.output())
	}
}

// waitOutput waits until the output holds want.
func (o *openssl) waitOutput(want string) {
	o.t.Helper()
	deadline := time.Now().Add(wait)
	for !strings.Contains(o.output(), want) {
		if time.Now().After(deadline) {
			o.t.Fatalf("openssl output lacks %q:\n%s", want, o.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exited waits for the process to end by itself.
func (o *openssl) exited() {
	o.t.Helper()
	done := make(chan struct{})
	go func() { _ = o.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		o.t.Fatalf("openssl still running; output:\n%s", o.output())
	}
}

const tlsRules = `
operation: {port: 1, transport: %s, tls: {enabled: true, clientAuthentication: %v}}
conversation:
  greetings: {value: "+OK secure\n"}
  rules: [{id: 1, mode: Sync, regex: "PING", response: "+PONG\n"}]
`

// tlsServer serves tlsRules with a handshake timeout of wait: handshakes with openssl, a
// process of its own, may be slow on a loaded machine.
func tlsServer(t *testing.T, transport string, clientAuth bool, ca *testCA) *harness {
	return tlsServerTimingOut(t, transport, clientAuth, ca, wait)
}

func tlsServerTimingOut(t *testing.T, transport string, clientAuth bool, ca *testCA, handshakeTimeout time.Duration) *harness {
	srv := ca.issue("server", false, false)
	cert := srv.pair(t)
	return start(t, fmt.Sprintf(tlsRules, transport, clientAuth), func(o *connector.Options) {
		o.TLS = &connector.TLS{Certificate: &cert, ClientCAs: ca.pool(), HandshakeTimeout: handshakeTimeout}
	})
}

func TestTLSServerWithOpenSSLClient(t *testing.T) {
	ca := newCA(t, "parley-test")
	h := tlsServer(t, "TCP", false, ca)
	c := runOpenSSL(t, "s_client", "-connect", h.Addr(), "-CAfile", ca.File, "-verify_return_error", "-quiet", "-servername", "decoy.example")
	c.waitOutput("+OK secure")
	c.send("PING\n")
	c.waitOutput("+PONG")
	conn := h.Activities.WaitFor(t, v1alpha1.ActivityConnected, 1)[0]
	if !strings.HasPrefix(conn.Message, "TLS 1.3") || !strings.Contains(conn.Message, "sni=decoy.example") {
		t.Errorf("Connected message %q", conn.Message)
	}
}

func TestTLSClientAuthentication(t *testing.T) {
	ca := newCA(t, "parley-test")
	other := newCA(t, "someone-else")
	h := tlsServer(t, "TCP", true, ca)
	good := ca.issue("alice", true, false)
	expired := ca.issue("bob", true, true)
	foreign := other.issue("mallory", true, false)

	c := runOpenSSL(t, "s_client", "-connect", h.Addr(), "-CAfile", ca.File, "-quiet", "-cert", good.Cert, "-key", good.Key)
	c.waitOutput("+OK secure")
	if conn := h.Activities.WaitFor(t, v1alpha1.ActivityConnected, 1)[0]; !strings.Contains(conn.Message, "peer=CN=alice") {
		t.Errorf("Connected message %q", conn.Message)
	}

	refused := []struct{ name, why string }{{"no certificate", "certificate"}, {"expired", "expired"}, {"wrong CA", "unknown authority"}}
	for i, cert := range []*issued{nil, &expired, &foreign} {
		args := []string{"s_client", "-connect", h.Addr(), "-CAfile", ca.File, "-quiet"}
		if cert != nil {
			args = append(args, "-cert", cert.Cert, "-key", cert.Key)
		}
		r := runOpenSSL(t, args...)
		r.exited()
		if strings.Contains(r.output(), "+OK secure") {
			t.Errorf("%s: greeted:\n%s", refused[i].name, r.output())
		}
		errs := h.Activities.WaitFor(t, v1alpha1.ActivityError, i+1)
		if msg := errs[i].Message; !strings.HasPrefix(msg, "TLS handshake") || !strings.Contains(msg, refused[i].why) {
			t.Errorf("%s: Error %q", refused[i].name, msg)
		}
	}
	if n := len(h.Activities.Of(v1alpha1.ActivityConnected)); n != 1 {
		t.Errorf("%d conversations", n)
	}
}

func TestTLSHandshakeThatNeverCompletesIsTimedOut(t *testing.T) {
	ca := newCA(t, "parley-test")
	h := tlsServerTimingOut(t, "TCP", false, ca, 2*time.Second)
	// Before the dial, so that the handshake's clock cannot start before it.
	begin := time.Now()
	conn, err := net.Dial("tcp", h.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	e := h.Activities.WaitFor(t, v1alpha1.ActivityError, 1)[0]
	if d := time.Since(begin); d < 1500*time.Millisecond || !strings.Contains(e.Message, "deadline") {
		t.Errorf("after %v: %q", d, e.Message)
	}
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Error("the silent peer's socket is still open")
	}
}

func TestTLSNeedsKeyMaterial(t *testing.T) {
	prog := connectortest.Compile(t, fmt.Sprintf(tlsRules, "TCP", false))
	c, _ := connector.New(prog, connector.Options{Register: newRegister(&connectortest.Collector{})})
	if err := c.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Errorf("Run: %v", err)
	}
}

func TestDTLSServerWithOpenSSLClient(t *testing.T) {
	ca := newCA(t, "parley-test")
	h := tlsServer(t, "UDP", true, ca)
	alice := ca.issue("alice", true, false)
	c := runOpenSSL(t, "s_client", "-dtls1_2", "-connect", h.Addr(), "-CAfile", ca.File, "-quiet", "-cert", alice.Cert, "-key", alice.Key)
	// UDP greets before the first reply
	conn := h.Activities.WaitFor(t, v1alpha1.ActivityConnected, 1)[0]
	if conn.Connection.Transport != "UDP" || !strings.Contains(conn.Message, "DTLS") || !strings.Contains(conn.Message, "peer=CN=alice") {
		t.Errorf("Connected %+v %q", conn.Connection, conn.Message)
	}
	c.send("PING\n")
	c.waitOutput("+OK secure\n+PONG")

	r := runOpenSSL(t, "s_client", "-dtls1_2", "-connect", h.Addr(), "-CAfile", ca.File, "-quiet")
	r.exited()
	if e := h.Activities.WaitFor(t, v1alpha1.ActivityError, 1)[0]; !strings.HasPrefix(e.Message, "DTLS handshake") {
		t.Errorf("Error %q", e.Message)
	}
}

const tlsClientRules = `
operation: {mode: Client, transport: %s, ip: 127.0.0.1, port: %d, maxConcurrentConnections: 1, tls: {enabled: true}}
conversation:
  greetings: {value: "HELLO\n"}
  rules: [{id: 1, mode: Sync, regex: "WELCOME", response: "BYE\n", ending: true}]
`

func TestClientModeAgainstOpenSSLServer(t *testing.T) {
	for _, transport := range []string{"TCP", "UDP"} {
		t.Run(transport, func(t *testing.T) {
			ca := newCA(t, "parley-test")
			srv := ca.issue("server", false, false)
			port := freeport.T(t)
			args := []string{"s_server", "-accept", fmt.Sprintf("127.0.0.1:%d", port), "-cert", srv.Cert, "-key", srv.Key}
			if transport == "UDP" {
				args = append(args, "-dtls1_2")
			}
			s := runOpenSSL(t, args...)
			s.waitOutput("ACCEPT") // s_server is listening
			h := start(t, fmt.Sprintf(tlsClientRules, transport, port), func(o *connector.Options) {
				o.TLS = &connector.TLS{RootCAs: ca.pool(), ServerName: "localhost"}
			})
			s.waitOutput("HELLO")
			s.send("WELCOME\n")
			s.waitOutput("BYE")
			if err := h.Wait(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestClientModeRefusesAnUntrustedServer(t *testing.T) {
	for _, tc := range []struct{ name, why string }{{"wrong CA", "unknown authority"}, {"expired", "expired"}} {
		t.Run(tc.name, func(t *testing.T) {
			ca := newCA(t, "parley-test")
			signer := ca
			if tc.name == "wrong CA" {
				signer = newCA(t, "someone-else")
			}
			srv := signer.issue("server", false, tc.name == "expired")
			port := freeport.T(t)
			s := runOpenSSL(t, "s_server", "-accept", fmt.Sprintf("127.0.0.1:%d", port), "-cert", srv.Cert, "-key", srv.Key)
			s.waitOutput("ACCEPT")
			h := start(t, fmt.Sprintf(tlsClientRules, "TCP", port), func(o *connector.Options) {
				o.TLS = &connector.TLS{RootCAs: ca.pool()}
			})
			if err := h.Wait(); err == nil {
				t.Fatal("connected to a server it should not trust")
			}
			if e := h.Activities.Of(v1alpha1.ActivityError); len(e) != 1 || !strings.Contains(e[0].Message, tc.why) {
				t.Errorf("errors: %+v", e)
			}
			if strings.Contains(s.output(), "HELLO") {
				t.Error("the greeting reached the untrusted server")
			}
		})
	}
}

func TestClientModeServerNameAndInsecureSkipVerify(t *testing.T) {
	cases := []struct {
		name    string
		tls     func(ca *testCA) *connector.TLS
		connect bool
		why     string
	}{
		{"wrong server name", func(ca *testCA) *connector.TLS {
			return &connector.TLS{RootCAs: ca.pool(), ServerName: "decoy.example"}
		}, false, "not decoy.example"},
		{"untrusted but told to skip verification", func(*testCA) *connector.TLS {
			return &connector.TLS{InsecureSkipVerify: true}
		}, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ca := newCA(t, "parley-test")
			srv := ca.issue("server", false, false) // valid for localhost and 127.0.0.1 only
			port := freeport.T(t)
			s := runOpenSSL(t, "s_server", "-accept", fmt.Sprintf("127.0.0.1:%d", port), "-cert", srv.Cert, "-key", srv.Key)
			s.waitOutput("ACCEPT")
			h := start(t, fmt.Sprintf(tlsClientRules, "TCP", port), func(o *connector.Options) { o.TLS = tc.tls(ca) })
			if !tc.connect {
				if err := h.Wait(); err == nil {
					t.Fatal("connected")
				}
				if e := h.Activities.Of(v1alpha1.ActivityError); len(e) != 1 || !strings.Contains(e[0].Message, tc.why) {
					t.Errorf("errors: %+v", e)
				}
				return
			}
			s.waitOutput("HELLO")
			s.send("WELCOME\n")
			s.waitOutput("BYE")
			if err := h.Wait(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
