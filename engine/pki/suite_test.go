package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"go.uber.org/zap/zapcore"

	"github.com/parley-dev/parley/internal/envtestutil"
)

// The tests run against a real kube-apiserver and etcd (envtest), because what matters here
// is how the apiserver answers concurrent creates and updates.
var k8s client.Client

// wait bounds how long a test waits for a manager; generous for loaded machines.
const wait = 30 * time.Second

func TestMain(m *testing.M) {
	envtestutil.RequireAssets()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	envtestutil.SetLogger()
	testEnv := &envtest.Environment{}
	cfg, err := testEnv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start envtest:", err)
		return 1
	}
	defer func() { _ = testEnv.Stop() }()
	if k8s, err = client.New(cfg, client.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 1
	}
	return m.Run()
}

// namespace makes a fresh namespace for one test.
func namespace(t *testing.T) string { t.Helper(); return envtestutil.Namespace(t, k8s, "pki-") }

const (
	secretName = "parley-engine"
	engineName = "parley-engine.parley-system.svc"
)

// newManager is a Manager on the test Secret in ns with SANs a client can dial on loopback.
func newManager(ns string) *Manager {
	return &Manager{
		Client:      k8s,
		APIReader:   k8s,
		Namespace:   ns,
		SecretName:  secretName,
		DNSNames:    []string{engineName},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
}

// logs collects one manager's log lines (JSON, one per line).
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// errors returns the lines logged at error level.
func (l *logs) errors() []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, `"level":"error"`) {
			out = append(out, line)
		}
	}
	return out
}

// start runs m.Start until the test ends (or stop is called) and checks that it returns nil
// when its context is cancelled.
func start(t *testing.T, m *Manager) (l *logs, stop func()) {
	t.Helper()
	l = &logs{}
	ctx, cancel := context.WithCancel(context.Background())
	ctx = log.IntoContext(ctx, zap.New(zap.WriteTo(l), zap.UseDevMode(false), zap.Level(zapcore.DebugLevel)))
	done := make(chan error, 1)
	go func() { done <- m.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Start returned %v after its context was cancelled; want nil", err)
				}
			case <-time.After(wait):
				t.Errorf("Start did not return within %v of its context being cancelled", wait)
			}
		})
	}
	t.Cleanup(stop)
	return l, stop
}

// startReady starts m and waits until it has a certificate.
func startReady(t *testing.T, m *Manager) (l *logs, stop func()) {
	t.Helper()
	l, stop = start(t, m)
	select {
	case <-m.Ready():
	case <-time.After(wait):
		t.Fatalf("manager not ready after %v; its log:\n%s", wait, l)
	}
	return l, stop
}

func getSecret(t *testing.T, ns string) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: secretName}, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatalf("no PEM block in %q", certPEM)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// served is the leaf m currently serves.
func served(t *testing.T, m *Manager) *x509.Certificate {
	t.Helper()
	c, err := m.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf
}

// serve runs a TLS listener with m.ServerTLSConfig on loopback for the rest of the test and
// returns its address.
func serve(t *testing.T, m *Manager) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", m.ServerTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { _ = conn.Close() }()
				_ = conn.SetDeadline(time.Now().Add(wait))
				// The handshake's outcome is the client's to judge; a rejected
				// certificate shows up there.
				_ = conn.(*tls.Conn).Handshake()
			}()
		}
	}()
	return ln.Addr().String()
}

// handshake dials addr as a connector would and returns the connection state.
func handshake(addr string, caPEM []byte, serverName string) (tls.ConnectionState, error) {
	cfg, err := enginev1.ClientTLSConfig(caPEM, serverName)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: wait}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer func() { _ = conn.Close() }()
	return conn.(*tls.Conn).ConnectionState(), nil
}

// mustHandshake is handshake that fails the test on error and returns the server's leaf.
func mustHandshake(t *testing.T, addr string, caPEM []byte, serverName string) *x509.Certificate {
	t.Helper()
	st, err := handshake(addr, caPEM, serverName)
	if err != nil {
		t.Fatalf("handshake with %s as %q: %v", addr, serverName, err)
	}
	if st.Version != tls.VersionTLS13 || st.NegotiatedProtocol != "h2" {
		t.Errorf("negotiated version %#x protocol %q; want TLS 1.3 and h2", st.Version, st.NegotiatedProtocol)
	}
	return st.PeerCertificates[0]
}

// eventually polls cond until it returns nil or the wait runs out.
func eventually(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: still not true after %v: %v", what, within, err)
}

var errSame = errors.New("unchanged")
