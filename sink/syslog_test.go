package sink_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/evidence"
	"github.com/parley-dev/parley/internal/freeport"
	"github.com/parley-dev/parley/sink"
)

// RFC 5424 §6.5, example 1's fields, with Parley's structured data.
func TestRFC5424(t *testing.T) {
	ts := time.Date(2003, 10, 11, 22, 14, 15, 3000000, time.UTC)
	got := string(sink.RFC5424(4, 2, ts, "mymachine.example.com", "ID47", nil, "'su root' failed for lonvick on /dev/pts/8"))
	want := "<34>1 2003-10-11T22:14:15.003000Z mymachine.example.com parley - ID47 - 'su root' failed for lonvick on /dev/pts/8"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	got = string(sink.RFC5424(16, 6, time.Time{}, "", "Input", [][2]string{{"key", `a"b\c]d`}}, ""))
	want = `<134>1 - - parley - Input [parley@32473 key="a\"b\\c\]d"]`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestCEF(t *testing.T) {
	got := sink.CEF(sink.Item{Key: "redis-abc-000001", Record: &v1alpha1.ActivityRecord{
		Connector: "redis", Type: v1alpha1.ActivityInput, Alert: true,
		Time:       metav1.MicroTime{Time: time.UnixMilli(1700000000123)},
		Connection: &v1alpha1.ConnectionRef{ID: "c-000001", Peer: "203.0.113.9:51122", Transport: v1alpha1.TransportTCP},
		Rules:      &v1alpha1.RulesRecord{Executed: []int32{3, 4}},
		Input:      &v1alpha1.InputRecord{Text: "AUTH a=b\\c\r\n", Bytes: 13},
	}})
	want := `CEF:0|Parley|Parley|v1alpha1|Input|Input alert|8|externalId=redis-abc-000001 cs1Label=connector cs1=redis rt=1700000000123 ` +
		`src=203.0.113.9 spt=51122 proto=TCP cs2Label=connection cs2=c-000001 cs3Label=rules cs3=3 4 in=13 request=AUTH a\=b\\c\r\n`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// rsyslog runs Debian's rsyslogd unprivileged-style (its own config, work directory and pid
// file in a temp dir) receiving on a free TCP port, plain or TLS (gtls driver), writing
// every message it gets, raw, one per line, to a file.
func rsyslog(t *testing.T, useTLS bool) (addr, out string, caPool *x509.CertPool) {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		t.Skip("rsyslogd not installed (Debian package rsyslog; CI installs it)")
	}
	modules := "/usr/lib/x86_64-linux-gnu/rsyslog"
	if _, err := os.Stat(filepath.Join(modules, "lmnsd_gtls.so")); useTLS && err != nil {
		t.Skip("rsyslog's TLS driver missing (Debian package rsyslog-gnutls; CI installs it)")
	}
	dir := t.TempDir()
	port := freeport.T(t)
	out = filepath.Join(dir, "received.log")
	input := fmt.Sprintf(`module(load="imtcp")
input(type="imtcp" port="%d" address="127.0.0.1")`, port)
	if useTLS {
		var certFile, keyFile string
		certFile, keyFile, caPool = selfSigned(t, dir)
		input = fmt.Sprintf(`global(DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="%s"
  DefaultNetstreamDriverCertFile="%s" DefaultNetstreamDriverKeyFile="%s")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
input(type="imtcp" port="%d" address="127.0.0.1")`, certFile, certFile, keyFile, port)
	}
	conf := fmt.Sprintf(`global(workDirectory="%s")
%s
template(name="raw" type="string" string="%%rawmsg%%\n")
action(type="omfile" file="%s" template="raw")
`, dir, input, out)
	confPath := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-n", "-f", confPath, "-i", filepath.Join(dir, "rsyslogd.pid"))
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("rsyslogd: %s", stderr.String())
		}
	})
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	for { // until it listens; the test's timeout bounds this
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr, out, caPool
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "siem.test"}, DNSNames: []string{"siem.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// readLines waits until the file holds n lines; the test's timeout bounds it.
func readLines(t *testing.T, path string, n int) []string {
	t.Helper()
	for {
		data, _ := os.ReadFile(path)
		if lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n"); len(data) > 0 && len(lines) >= n {
			return lines
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSyslogToRsyslog(t *testing.T) {
	for _, c := range []struct {
		name   string
		tls    bool
		format v1alpha1.SyslogFormat
	}{{"tcp RFC5424", false, v1alpha1.SyslogRFC5424}, {"tls CEF", true, v1alpha1.SyslogCEF}} {
		t.Run(c.name, func(t *testing.T) {
			addr, out, pool := rsyslog(t, c.tls)
			scheme, tlsConfig := "tcp", (*tls.Config)(nil)
			if c.tls {
				scheme, tlsConfig = "tls", &tls.Config{RootCAs: pool, ServerName: "siem.test"}
			}
			dest, err := sink.NewSyslog(scheme+"://"+addr, c.format, "local3", tlsConfig)
			if err != nil {
				t.Fatal(err)
			}
			s := sink.New(dest, sink.Options{MaxBatch: 50})
			go s.Run()
			defer s.Close()
			batch := items("redis-7f3a9c", 120)
			batch[7].Record.Input.Text = "line\nbreak ] \"quoted\""
			s.Offer(batch...)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := s.Drain(ctx, 120); err != nil {
				t.Fatal(err)
			}
			lines := readLines(t, out, 120)
			if len(lines) != 120 {
				t.Fatalf("%d messages, want 120:\n%s", len(lines), strings.Join(lines, "\n"))
			}
			for i, l := range lines {
				key := fmt.Sprintf("redis-7f3a9c-%06d", i+1)
				want := `<158>1 ` // local3 (19) * 8 + info (6)
				if !strings.HasPrefix(l, want) || !strings.Contains(l, key) {
					t.Fatalf("message %d: %s; want %s… with key %s", i, l, want, key)
				}
				if c.format == v1alpha1.SyslogCEF && !strings.Contains(l, " parley - Input - CEF:0|Parley|Parley|v1alpha1|Input|Input|3|externalId="+key) {
					t.Fatalf("message %d is not CEF: %s", i, l)
				}
			}
			if c.format == v1alpha1.SyslogRFC5424 && !strings.Contains(lines[7], `[parley@32473 key="redis-7f3a9c-000008" connector="redis" alert="false"] {"connector":"redis"`) {
				t.Errorf("message 8: %s", lines[7])
			}
		})
	}
}

// A checkpoint goes to syslog as a message of its own, MSGID Checkpoint, with its key and
// connector, its text the checkpoint line parley verify reads.
func TestSyslogCarriesCheckpoints(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dest, err := sink.NewSyslog("tcp://"+l.Addr().String(), "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dest.Close()
	cp := &evidence.Checkpoint{Chain: "3f9a1c07d2b4e851", Seq: 10, Hash: "sha256:ab", Time: "2026-11-21T10:00:10.5Z", Key: "8c1d", Signature: "c2ln"}
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		b := make([]byte, 4096)
		n, _ := c.Read(b)
		got <- string(b[:n])
	}()
	if err := dest.Deliver(context.Background(), []sink.Item{sink.CheckpointItem("redis", cp)}); err != nil {
		t.Fatal(err)
	}
	msg := <-got
	const line = `{"checkpoint":{"chain":"3f9a1c07d2b4e851","seq":10,"hash":"sha256:ab","time":"2026-11-21T10:00:10.5Z","key":"8c1d","signature":"c2ln"}}`
	want := `<134>1 2026-11-21T10:00:10.500000Z ` // local0, informational
	tail := ` parley - Checkpoint [parley@32473 key="redis-checkpoint-3f9a1c07d2b4e851-10" connector="redis" checkpoint="true"] ` + line
	_, framed, _ := strings.Cut(msg, " ")
	if !strings.HasPrefix(framed, want) || !strings.HasSuffix(framed, tail) {
		t.Errorf("got  %s\nwant %s<host>%s", msg, want, tail)
	}
}

// A syslog receiver that stops reading holds a write once the socket buffers are full, until
// the write's own 30 s deadline: Close must not wait for it (Deliver returns when its
// context ends). What was in flight is left over, neither delivered nor dropped.
func TestSyslogCloseDoesNotWaitForAReceiverThatStoppedReading(t *testing.T) {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", freeport.T(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	inFlight := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
			close(inFlight)
			return
		}
		_ = c.(*net.TCPConn).SetReadBuffer(4096) // the batch below cannot fit in the buffers
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Error(err)
		}
		inFlight <- c // and reads nothing more
	}()
	dest, err := sink.NewSyslog("tcp://"+l.Addr().String(), "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := sink.New(dest, sink.Options{})
	batch := items("stalled", 1)
	batch[0].Record.Input.Text = strings.Repeat("x", 16<<20)
	s.Offer(batch...)
	go s.Run()
	c, ok := <-inFlight
	if !ok {
		t.Fatal("the receiver got no connection")
	}
	defer c.Close()
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second): // generous, and short of the write's own deadline
		t.Fatal("Close waits for the write to a receiver that stopped reading")
	}
	if st := s.Stats(); st.Delivered != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
	if left := s.Leftover(); len(left) != 1 || left[0].Key != batch[0].Key {
		t.Errorf("left over %d items, want the one in flight", len(left))
	}
}
