package connector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/logging"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

// DefaultHandshakeTimeout bounds a TLS or DTLS handshake, so a peer that never completes one
// holds nothing for long.
const DefaultHandshakeTimeout = 10 * time.Second

// TLS is the key material behind operation.tls. In the cluster it comes from the
// ExternalConnector's Secrets; standalone, from `parley run --tls-*` flags.
type TLS struct {
	// Certificate is the server's certificate (server mode) or the one a client presents
	// when the server asks for one (client mode).
	Certificate *tls.Certificate
	// ClientCAs verify peers' certificates when operation.tls.clientAuthentication is set.
	ClientCAs *x509.CertPool
	// RootCAs verify the server in client mode; nil means the system's roots.
	RootCAs *x509.CertPool
	// ServerName is checked against the server's certificate in client mode; it defaults
	// to operation.ip.
	ServerName string
	// InsecureSkipVerify accepts any server certificate in client mode.
	InsecureSkipVerify bool
	// HandshakeTimeout defaults to DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
}

// LoadTLS reads PEM files; empty names are skipped.
func LoadTLS(certFile, keyFile, clientCAFile, caFile string) (*TLS, error) {
	t := &TLS{}
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return nil, errors.New("a certificate needs both --tls-cert and --tls-key")
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load certificate %s / key %s: %w", certFile, keyFile, err)
		}
		t.Certificate = &cert
	}
	var err error
	if t.ClientCAs, err = loadPool(clientCAFile); err != nil {
		return nil, err
	}
	if t.RootCAs, err = loadPool(caFile); err != nil {
		return nil, err
	}
	return t, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificates", file)
	}
	return pool, nil
}

// checkTLS says what is missing for the program's TLS settings, before anything listens.
func (c *Connector) checkTLS(p *rules.Program) error {
	if !p.TLS.Enabled {
		return nil
	}
	t := c.opts.TLS
	switch {
	case p.Mode == v1alpha1.ModeServer && (t == nil || t.Certificate == nil):
		return errors.New("operation.tls.enabled: a server needs a certificate and key (parley run --tls-cert, --tls-key)")
	case p.Mode == v1alpha1.ModeServer && p.TLS.ClientAuthentication && t.ClientCAs == nil:
		return errors.New("operation.tls.clientAuthentication: needs the CA bundle that signs client certificates (parley run --tls-client-ca)")
	}
	return nil
}

func (t *TLS) handshakeTimeout() time.Duration {
	if t == nil || t.HandshakeTimeout <= 0 {
		return DefaultHandshakeTimeout
	}
	return t.HandshakeTimeout
}

func (t *TLS) serverConfig(p *rules.Program) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{*t.Certificate}, MinVersion: tls.VersionTLS12}
	if p.TLS.ClientAuthentication {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, t.ClientCAs
	}
	return cfg
}

func (t *TLS) clientConfig(host string) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if t == nil {
		return cfg
	}
	if t.Certificate != nil {
		cfg.Certificates = []tls.Certificate{*t.Certificate}
	}
	if t.ServerName != "" {
		cfg.ServerName = t.ServerName
	}
	cfg.RootCAs, cfg.InsecureSkipVerify = t.RootCAs, t.InsecureSkipVerify
	return cfg
}

// dtlsLoggers gives every DTLS connection one logger, the library's default (its level set
// by the PION_LOG_* variables): the library's own factory makes a logger for each connection,
// half a KiB of heap for every handshake under way, spoofed ones included.
var dtlsLoggers = sharedLoggerFactory{sync.OnceValue(func() logging.LeveledLogger {
	return logging.NewDefaultLoggerFactory().NewLogger("dtls")
})}

type sharedLoggerFactory struct{ logger func() logging.LeveledLogger }

func (f sharedLoggerFactory) NewLogger(string) logging.LeveledLogger { return f.logger() }

func (t *TLS) dtlsServerOptions(p *rules.Program) []dtls.ServerOption {
	opts := []dtls.ServerOption{
		dtls.WithLoggerFactory(dtlsLoggers),
		dtls.WithCertificates(*t.Certificate),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
	}
	if p.TLS.ClientAuthentication {
		opts = append(opts, dtls.WithClientAuth(dtls.RequireAndVerifyClientCert), dtls.WithClientCAs(t.ClientCAs))
	}
	return opts
}

func (t *TLS) dtlsClientOptions(host string) []dtls.ClientOption {
	cfg := t.clientConfig(host)
	opts := []dtls.ClientOption{
		dtls.WithLoggerFactory(dtlsLoggers),
		dtls.WithServerName(cfg.ServerName),
		dtls.WithRootCAs(cfg.RootCAs),
		dtls.WithInsecureSkipVerify(cfg.InsecureSkipVerify),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
	}
	if len(cfg.Certificates) > 0 {
		opts = append(opts, dtls.WithCertificates(cfg.Certificates...))
	}
	return opts
}

// secureServer runs the server side of a TLS or DTLS handshake on an accepted connection and
// returns the connection to use and a description of the session for the Connected activity.
//
// Its frame is kept small: a DTLS handshake waits for its peer's cookie inside it, on one
// goroutine per handshake under way, and with the session states in its frame (3 KiB) that
// goroutine's stack was 8 KiB rather than 4. The states are read in functions of their own
// (tlsServer, dtlsDetail), kept out of line.
func (c *Connector) secureServer(p *rules.Program, conn net.Conn) (net.Conn, string, error) {
	ctx, cancel := context.WithTimeout(c.stopContext(), c.opts.TLS.handshakeTimeout())
	defer cancel()
	switch sc := conn.(type) {
	case *dtlsServerConn:
		if err := sc.handshake(ctx); err != nil {
			return nil, "", fmt.Errorf("DTLS handshake: %w", err)
		}
		return sc.Conn, dtlsDetail(sc.Conn), nil
	case *dtls.Conn:
		if err := sc.HandshakeContext(ctx); err != nil {
			return nil, "", fmt.Errorf("DTLS handshake: %w", err)
		}
		return sc, dtlsDetail(sc), nil
	default:
		return c.tlsServer(ctx, p, conn)
	}
}

// tlsServer runs a TLS server handshake within ctx (secureServer).
//
//go:noinline
func (c *Connector) tlsServer(ctx context.Context, p *rules.Program, conn net.Conn) (net.Conn, string, error) {
	tc := tls.Server(conn, c.opts.TLS.serverConfig(p))
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, "", fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, tlsDetail(tc.ConnectionState()), nil
}

// secureClient runs the client side of a handshake over a dialled TCP connection or an
// unconnected UDP socket (DTLS).
func (c *Connector) secureClient(p *rules.Program, conn net.Conn, pc net.PacketConn, raddr net.Addr, host string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(c.stopContext(), c.opts.TLS.handshakeTimeout())
	defer cancel()
	if p.Transport == v1alpha1.TransportUDP {
		dc, err := dtls.ClientWithOptions(pc, raddr, c.opts.TLS.dtlsClientOptions(host)...)
		if err != nil {
			return nil, fmt.Errorf("DTLS: %w", err)
		}
		if err := dc.HandshakeContext(ctx); err != nil {
			_ = dc.Close()
			return nil, fmt.Errorf("DTLS handshake with %s: %w", raddr, err)
		}
		return dc, nil
	}
	tc := tls.Client(conn, c.opts.TLS.clientConfig(host))
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", raddr, err)
	}
	return tc, nil
}

func tlsDetail(st tls.ConnectionState) string {
	d := tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite)
	if st.ServerName != "" {
		d += " sni=" + st.ServerName
	}
	if len(st.PeerCertificates) > 0 {
		d += " peer=" + st.PeerCertificates[0].Subject.String()
	}
	return d
}

// dtlsDetail describes a DTLS session after its handshake (secureServer).
//
//go:noinline
func dtlsDetail(c *dtls.Conn) string {
	st, _ := c.ConnectionState()
	d := "DTLS 1.2"
	if len(st.PeerCertificates) > 0 {
		if cert, err := x509.ParseCertificate(st.PeerCertificates[0]); err == nil {
			d += " peer=" + cert.Subject.String()
		}
	}
	return d
}
