package enginev1

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
)

// The channel's TLS settings, the same on both ends. TLS 1.3 only: both ends are Parley
// binaries, so there is no older peer to accommodate; gRPC runs over HTTP/2.
const MinTLSVersion = tls.VersionTLS13

// NextProtos is the ALPN both ends offer.
func NextProtos() []string { return []string{"h2"} }

// ClientTLSConfig is how a connector dials the engine: it trusts only the engine CA in
// caPEM and expects serverName among the serving certificate's SANs (an empty serverName
// lets the dialer take it from the address it dials).
func ClientTLSConfig(caPEM []byte, serverName string) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("engine CA: no certificate found in the PEM data")
	}
	return &tls.Config{
		MinVersion: MinTLSVersion,
		RootCAs:    pool,
		ServerName: serverName,
		NextProtos: NextProtos(),
	}, nil
}
