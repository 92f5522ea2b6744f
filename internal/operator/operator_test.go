package operator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSignedPEM is a CA certificate made for the test.
func selfSignedPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redis-ca"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestSharedMemoryOptions(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	password, empty := write("password", "hunter2\n"), write("empty", "\n")
	testCA := selfSignedPEM(t)
	ca, notPEM := write("ca.crt", testCA), write("bad.crt", "not a certificate")
	for _, tc := range []struct {
		name                string
		url, pwFile, caFile string
		err                 string
	}{
		{name: "none"},
		{name: "files without a URL", pwFile: password, err: "need --shared-memory-url"},
		{name: "not redis", url: "http://redis:6379", err: "want redis://"},
		{name: "no host", url: "redis:///0", err: "no host"},
		{name: "database not a number", url: "redis://redis:6379/zero", err: "invalid database number"},
		{name: "unknown option", url: "redis://redis:6379/0?pool=3", err: "unexpected option: pool"},
		{name: "password in the URL", url: "redis://:hunter2@redis:6379/0", err: "--shared-memory-password-file"},
		{name: "missing password file", url: "redis://redis:6379", pwFile: filepath.Join(dir, "absent"), err: "--shared-memory-password-file"},
		{name: "empty password file", url: "redis://redis:6379", pwFile: empty, err: "is empty"},
		{name: "CA without TLS", url: "redis://redis:6379", caFile: ca, err: "needs a rediss://"},
		{name: "CA not PEM", url: "rediss://redis:6379", caFile: notPEM, err: "no PEM certificate"},
		{name: "all", url: "rediss://redis:6379/0", pwFile: password, caFile: ca},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{SharedMemoryURL: tc.url, SharedMemoryPasswordFile: tc.pwFile, SharedMemoryCAFile: tc.caFile}
			m, err := o.sharedMemory()
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one with %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("the error shows the password: %v", err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if m.URL != tc.url || (tc.pwFile != "" && string(m.Password) != "hunter2") || (tc.caFile != "" && string(m.CA) != testCA) {
				t.Errorf("got %+v", m)
			}
		})
	}
}
