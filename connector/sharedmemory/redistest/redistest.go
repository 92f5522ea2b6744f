// Package redistest runs a real redis-server (Debian's redis-server package) for a test,
// on a free loopback port in the test's temporary directory, and stops it at the end.
package redistest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/parley-dev/parley/internal/freeport"
)

// Options of a server.
type Options struct {
	// Password, when set, is required (requirepass).
	Password string
	// TLS serves TLS only, with a certificate for TLSHosts issued by CAPEM.
	TLS bool
	// TLSHosts are the IP addresses and DNS names the certificate is for; default
	// 127.0.0.1.
	TLSHosts []string
}

// Server is a running redis-server.
type Server struct {
	t    testing.TB
	opts Options
	dir  string
	Port int
	// CAPEM is the CA of a TLS server's certificate.
	CAPEM []byte
	// tlsGen numbers the CA, certificate and key files the server uses (RotateCA writes
	// new ones).
	tlsGen int
	cmd    *exec.Cmd
	done   chan struct{}
}

// Start starts a redis-server, or skips the test when the binary is missing (CI installs
// the Debian package redis-server).
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed (Debian package redis-server): the shared-memory tests need a real Redis")
	}
	port := freeport.T(t)
	s := &Server{t: t, opts: opts, dir: t.TempDir(), Port: port}
	if opts.TLS {
		s.writeTLS()
	}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is the server's URL, with its password if any.
func (s *Server) URL() string {
	scheme := "redis"
	if s.opts.TLS {
		scheme = "rediss"
	}
	auth := ""
	if s.opts.Password != "" {
		auth = ":" + s.opts.Password + "@"
	}
	return scheme + "://" + auth + s.Addr() + "/0"
}

// Restart starts the server again on the same port (after Stop), and returns once it
// accepts connections.
func (s *Server) Restart() {
	s.t.Helper()
	args := []string{"--bind", "127.0.0.1", "--dir", s.dir, "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"}
	if s.opts.TLS {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(s.Port),
			"--tls-cert-file", s.tlsFile("cert"), "--tls-key-file", s.tlsFile("key"),
			"--tls-ca-cert-file", s.tlsFile("ca"), "--tls-auth-clients", "no")
	} else {
		args = append(args, "--port", strconv.Itoa(s.Port))
	}
	if s.opts.Password != "" {
		args = append(args, "--requirepass", s.opts.Password)
	}
	s.cmd = exec.Command("redis-server", args...)
	logFile, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logFile.Close()
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("redis-server: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.done)
	// Readiness, not a timed assertion: the port opens once the server is up.
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.Dial("tcp4", s.Addr())
		if err == nil {
			_ = c.Close()
			return
		}
		select {
		case <-s.done:
			s.t.Fatalf("redis-server exited at start (port %d)", s.Port)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server did not open port %d within 30s", s.Port)
		}
	}
}

// Stop kills the server and waits for it: the store is down from then on.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done // the goroutine waiting for the process has returned
	s.cmd = nil
}

// tlsFile is the path of the current CA, certificate or key file (name "ca", "cert" or
// "key").
func (s *Server) tlsFile(name string) string {
	return filepath.Join(s.dir, fmt.Sprintf("%s-%d.pem", name, s.tlsGen))
}

// writeTLS writes a new CA and a certificate for the server's hosts it issued, under new
// file names.
func (s *Server) writeTLS() {
	s.t.Helper()
	ca, caKey, caPEM := newCA(s.t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		s.t.Fatal(err)
	}
	hosts := s.opts.TLSHosts
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1"}
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			leaf.IPAddresses = append(leaf.IPAddresses, ip)
		} else {
			leaf.DNSNames = append(leaf.DNSNames, h)
		}
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		s.t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		s.t.Fatal(err)
	}
	s.tlsGen++
	s.CAPEM = caPEM
	write := func(name string, b []byte) {
		if err := os.WriteFile(s.tlsFile(name), b, 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
	write("ca", s.CAPEM)
	write("cert", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}))
	write("key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
}

// newCA makes a self-signed CA.
func newCA(t testing.TB) (*x509.Certificate, crypto.Signer, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redistest CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// UnrelatedCA is the PEM of a new CA that issued no server's certificate: what a client
// must refuse a server with.
func UnrelatedCA(t testing.TB) []byte {
	t.Helper()
	_, _, caPEM := newCA(t)
	return caPEM
}

// RotateCA issues the server a new certificate, for the same hosts, from a new CA, as
// when the store's CA is renewed, and has the running server serve it (CONFIG SET) to the
// connections it accepts from now on; those already open keep theirs. CAPEM, CLI and
// Restart use the new CA afterwards.
func (s *Server) RotateCA() {
	s.t.Helper()
	if !s.opts.TLS {
		s.t.Fatal("RotateCA: the server does not serve TLS")
	}
	oldCA := s.tlsFile("ca") // the CLI's connection still gets the old certificate
	s.writeTLS()
	out := s.cli(oldCA, "CONFIG", "SET", "tls-cert-file", s.tlsFile("cert"), "tls-key-file", s.tlsFile("key"),
		"tls-ca-cert-file", s.tlsFile("ca"))
	if out != "OK\n" {
		s.t.Fatalf("CONFIG SET tls-cert-file: %q", out)
	}
}

// SetPassword makes the running server require password from now on (CONFIG SET
// requirepass), as when its password is rotated: connections already authenticated stay.
// CLI, URL and Restart use the new password afterwards.
func (s *Server) SetPassword(password string) {
	s.t.Helper()
	if out := s.CLI("CONFIG", "SET", "requirepass", password); out != "OK\n" {
		s.t.Fatalf("CONFIG SET requirepass: %q", out)
	}
	s.opts.Password = password
}

// CLI runs redis-cli against the server and returns its output.
func (s *Server) CLI(args ...string) string {
	s.t.Helper()
	return s.cli(s.tlsFile("ca"), args...)
}

// cli runs redis-cli, trusting caFile when the server serves TLS.
func (s *Server) cli(caFile string, args ...string) string {
	s.t.Helper()
	base := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(s.Port)}
	if s.opts.Password != "" {
		base = append(base, "--no-auth-warning", "-a", s.opts.Password)
	}
	if s.opts.TLS {
		base = append(base, "--tls", "--cacert", caFile)
	}
	out, err := exec.Command("redis-cli", append(base, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("redis-cli %v: %v: %s", args, err, out)
	}
	return string(out)
}
