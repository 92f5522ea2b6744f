package connector

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/freeport"
	"github.com/parley-dev/parley/rules"
)

// A UDP server, plain or DTLS, asks the kernel for a receive buffer of udpReadBuffer, which
// the kernel caps at net.core.rmem_max (and doubles, for its bookkeeping): with the default,
// a burst of a millisecond of a flood (datagrams, or spoofed ClientHellos) is dropped before
// the connector reads it, real clients' datagrams among the spoofed ones (docs/hardening.md
// §1).
func TestUDPServerAsksForALargeReceiveBuffer(t *testing.T) {
	readSysctl := func(name string) int {
		t.Helper()
		b, err := os.ReadFile("/proc/sys/net/core/" + name)
		if err != nil {
			t.Skipf("cannot read net.core.%s: %v", name, err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Without the request the buffer is net.core.rmem_default; granted, twice what was
	// granted: more than the default even where rmem_max is left at it.
	rmemMax := readSysctl("rmem_max")
	cert := selfSigned(t)
	c := &Connector{opts: Options{TLS: &TLS{Certificate: &cert}}}
	for _, tc := range []struct {
		name   string
		listen func(p *rules.Program) (*net.UDPConn, io.Closer)
	}{
		{"plain", func(p *rules.Program) (*net.UDPConn, io.Closer) {
			conn, err := c.listenUDP(p)
			if err != nil {
				t.Fatal(err)
			}
			return conn, conn
		}},
		{"DTLS", func(p *rules.Program) (*net.UDPConn, io.Closer) {
			p.TLS.Enabled = true
			ln, err := c.listenDTLS(p)
			if err != nil {
				t.Fatal(err)
			}
			return ln.(*dtlsListener).demux.pc, ln
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, closer := tc.listen(&rules.Program{Transport: v1alpha1.TransportUDP, IP: "127.0.0.1", Port: freeport.T(t)})
			defer closer.Close()
			rc, err := conn.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var got int
			var sockErr error
			if err := rc.Control(func(fd uintptr) {
				got, sockErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
			}); err != nil {
				t.Fatal(err)
			}
			if sockErr != nil {
				t.Fatal(sockErr)
			}
			if want := 2 * min(udpReadBuffer, rmemMax); got != want {
				t.Errorf("SO_RCVBUF %d, want %d (udpReadBuffer %d, rmem_max %d)", got, want, udpReadBuffer, rmemMax)
			}
		})
	}
}

// selfSigned is a certificate for a DTLS listener that no client will see.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
