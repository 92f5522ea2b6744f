// Package uplinktest is an in-process stand-in for the engine, for tests of the connector
// side of the engine channel: a real gRPC server over real TLS on loopback that records what
// connectors send, acknowledges batches, and sends Configs and Orders on demand. The real
// engine, inside the operator, has its own tests against envtest; this one knows nothing of
// Kubernetes, so connector tests need no cluster. It is meant for tests only.
package uplinktest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/yaml"

	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/freeport"
	"github.com/parley-dev/parley/rules"
)

// ServerName is the name the engine's certificate carries (as well as 127.0.0.1).
const ServerName = "engine.parley.test"

// Wait bounds every wait for something that should happen soon; tests share loaded machines.
const Wait = 30 * time.Second

// Engine is the fake engine.
type Engine struct {
	enginev1.UnimplementedEngineServer

	// CAPEM is the CA that signed the engine's certificate, for the connector to trust.
	CAPEM []byte
	addr  string
	creds credentials.TransportCredentials

	mu sync.Mutex
	// token, if set, is required in Hello; others get PermissionDenied.
	token string
	// manualAck stops acknowledging batches on receipt; the test calls Ack.
	manualAck bool
	srv       *grpc.Server
	config    *enginev1.Config
	streams   map[*Stream]struct{}
	hellos    []*enginev1.Hello
	// acts holds every activity received by seq; received lists seqs in arrival order,
	// replays included.
	acts       map[uint64][]byte
	received   []uint64
	batches    []*enginev1.ActivityBatch
	heartbeats []*enginev1.Heartbeat
	byes       []*enginev1.Bye
	acked      uint64
}

// Stream is one connector's live stream.
type Stream struct {
	Hello *enginev1.Hello
	mu    sync.Mutex
	s     grpc.BidiStreamingServer[enginev1.ConnectorMessage, enginev1.EngineMessage]
}

// Send sends m on the stream; safe for concurrent use.
func (s *Stream) Send(m *enginev1.EngineMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.s.Send(m)
}

// New returns an engine with fresh key material, listening on a free loopback port. It is
// stopped when the test ends.
func New(t testing.TB) *Engine {
	t.Helper()
	e := &Engine{acts: map[uint64][]byte{}, streams: map[*Stream]struct{}{}}
	caPEM, cert, err := keyMaterial()
	if err != nil {
		t.Fatal(err)
	}
	e.CAPEM = caPEM
	e.creds = credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	// A port from freeport, not the kernel's choice: Restart listens on it again after Stop,
	// and in between an ephemeral port may become the local end of any connection made on the
	// machine, and stay taken.
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(freeport.T(t))))
	if err != nil {
		t.Fatal(err)
	}
	e.addr = l.Addr().String()
	e.serve(l)
	t.Cleanup(e.Stop)
	return e
}

// Addr is the engine's host:port; it stays the same across Stop and Restart.
func (e *Engine) Addr() string { return e.addr }

// ClientTLS is a client configuration trusting the engine.
func (e *Engine) ClientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.CAPEM)
	return &tls.Config{RootCAs: pool, ServerName: ServerName, MinVersion: tls.VersionTLS12}
}

func (e *Engine) serve(l net.Listener) {
	// Stop waits for the handlers: once it returns, nothing more is recorded, and a test can
	// take what the engine received before the crash.
	srv := grpc.NewServer(grpc.Creds(e.creds), grpc.WaitForHandlers(true))
	enginev1.RegisterEngineServer(srv, e)
	e.mu.Lock()
	e.srv = srv
	e.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

// Stop kills the engine at once, as a crashed process would: streams break mid-flight.
func (e *Engine) Stop() {
	e.mu.Lock()
	srv := e.srv
	e.srv = nil
	e.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// Restart starts a stopped engine again on the same address, with what it has received so
// far (as the real engine keeps it in the cluster).
func (e *Engine) Restart(t testing.TB) {
	t.Helper()
	var l net.Listener
	var err error
	// The kernel may hold the port a moment after the old listener closed.
	for deadline := time.Now().Add(Wait); ; time.Sleep(50 * time.Millisecond) {
		if l, err = net.Listen("tcp", e.addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	e.serve(l)
}

// SetConfig is sent after every Hello whose rules_hash differs from its hash, and at once
// to every live stream.
func (e *Engine) SetConfig(c *enginev1.Config) {
	e.mu.Lock()
	e.config = c
	streams := e.liveLocked()
	e.mu.Unlock()
	for _, s := range streams {
		_ = s.Send(&enginev1.EngineMessage{Message: &enginev1.EngineMessage_Config{Config: c}})
	}
}

// Order sends o to every live stream and returns how many got it.
func (e *Engine) Order(kind enginev1.Order_Kind, reason string) int {
	e.mu.Lock()
	streams := e.liveLocked()
	e.mu.Unlock()
	n := 0
	for _, s := range streams {
		if s.Send(&enginev1.EngineMessage{Message: &enginev1.EngineMessage_Order{Order: &enginev1.Order{Kind: kind, Reason: reason}}}) == nil {
			n++
		}
	}
	return n
}

// Ack acknowledges every activity up to upTo on every live stream.
func (e *Engine) Ack(upTo uint64) {
	e.mu.Lock()
	e.acked = max(e.acked, upTo)
	streams := e.liveLocked()
	e.mu.Unlock()
	for _, s := range streams {
		_ = s.Send(&enginev1.EngineMessage{Message: &enginev1.EngineMessage_Ack{Ack: &enginev1.Ack{UpToSeq: upTo}}})
	}
}

func (e *Engine) liveLocked() []*Stream {
	out := make([]*Stream, 0, len(e.streams))
	for s := range e.streams {
		out = append(out, s)
	}
	return out
}

// Connect implements enginev1.EngineServer.
func (e *Engine) Connect(srv grpc.BidiStreamingServer[enginev1.ConnectorMessage, enginev1.EngineMessage]) error {
	m, err := srv.Recv()
	if err != nil {
		return err
	}
	hello := m.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "the first message must be Hello")
	}
	s := &Stream{Hello: hello, s: srv}
	e.mu.Lock()
	if e.token != "" && hello.GetToken() != e.token {
		e.hellos = append(e.hellos, hello)
		e.mu.Unlock()
		return status.Error(codes.PermissionDenied, "bad token")
	}
	e.hellos = append(e.hellos, hello)
	e.streams[s] = struct{}{}
	config := e.config
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.streams, s)
		e.mu.Unlock()
	}()
	if config != nil && config.GetHash() != hello.GetRulesHash() {
		if err := s.Send(&enginev1.EngineMessage{Message: &enginev1.EngineMessage_Config{Config: config}}); err != nil {
			return err
		}
	}
	for {
		m, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch m := m.Message.(type) {
		case *enginev1.ConnectorMessage_Activities:
			b := m.Activities
			last := b.GetFirstSeq() + uint64(len(b.GetActivities())) - 1
			e.mu.Lock()
			e.batches = append(e.batches, b)
			for i, a := range b.GetActivities() {
				seq := b.GetFirstSeq() + uint64(i)
				e.acts[seq] = a
				e.received = append(e.received, seq)
			}
			manual := e.manualAck
			e.mu.Unlock()
			if !manual {
				if err := s.Send(&enginev1.EngineMessage{Message: &enginev1.EngineMessage_Ack{Ack: &enginev1.Ack{UpToSeq: last}}}); err != nil {
					return err
				}
			}
		case *enginev1.ConnectorMessage_Heartbeat:
			e.mu.Lock()
			e.heartbeats = append(e.heartbeats, m.Heartbeat)
			e.mu.Unlock()
		case *enginev1.ConnectorMessage_Bye:
			e.mu.Lock()
			e.byes = append(e.byes, m.Bye)
			e.mu.Unlock()
			return nil
		case *enginev1.ConnectorMessage_Hello:
			return status.Error(codes.InvalidArgument, "Hello twice")
		}
	}
}

// SetManualAck switches acknowledgement on receipt off (the test calls Ack) or back on.
func (e *Engine) SetManualAck(on bool) {
	e.mu.Lock()
	e.manualAck = on
	e.mu.Unlock()
}

// SetToken makes the engine require token in Hello and refuse others with PermissionDenied.
func (e *Engine) SetToken(token string) {
	e.mu.Lock()
	e.token = token
	e.mu.Unlock()
}

// Hellos returns every Hello received so far.
func (e *Engine) Hellos() []*enginev1.Hello {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*enginev1.Hello(nil), e.hellos...)
}

// Activities returns every distinct activity received, by seq.
func (e *Engine) Activities() map[uint64][]byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[uint64][]byte, len(e.acts))
	for k, v := range e.acts {
		out[k] = v
	}
	return out
}

// Received lists the seqs of every activity received, in arrival order, replays included.
func (e *Engine) Received() []uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]uint64(nil), e.received...)
}

// Batches returns every batch received.
func (e *Engine) Batches() []*enginev1.ActivityBatch {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*enginev1.ActivityBatch(nil), e.batches...)
}

// Heartbeats returns every heartbeat received.
func (e *Engine) Heartbeats() []*enginev1.Heartbeat {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*enginev1.Heartbeat(nil), e.heartbeats...)
}

// Byes returns every Bye received.
func (e *Engine) Byes() []*enginev1.Bye {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*enginev1.Bye(nil), e.byes...)
}

// Live is the number of streams up now.
func (e *Engine) Live() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.streams)
}

// Eventually polls cond until it holds, failing the test after Wait.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// keyMaterial makes a CA and an engine certificate for ServerName and 127.0.0.1.
func keyMaterial() (caPEM []byte, cert tls.Certificate, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, cert, err
	}
	now := time.Now()
	caTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "parley test engine CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, cert, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, cert, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, cert, err
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ServerName},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{ServerName}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, cert, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, cert, err
	}
	cert, err = tls.X509KeyPair(
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		return nil, cert, fmt.Errorf("engine key pair: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), cert, nil
}

// Config is the engine's Config of the rules spec written in specYAML, as the engine sends
// it: named name, at generation, hashed as written; a port other than 0 is the connector's
// port override.
func Config(t testing.TB, specYAML, name string, generation int64, port int) *enginev1.Config {
	t.Helper()
	var spec v1alpha1.ConversationRulesSpec
	if err := yaml.UnmarshalStrict([]byte(specYAML), &spec); err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(&spec)
	if err != nil {
		t.Fatal(err)
	}
	c := &enginev1.Config{Spec: raw, RulesName: name, Generation: generation, Hash: rules.Hash(&spec)}
	if port != 0 {
		p := int32(port)
		c.Port = &p
	}
	return c
}
