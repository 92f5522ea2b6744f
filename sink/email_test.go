package sink_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/sink"
)

// mailServer is a real SMTP server (emersion/go-smtp, the server library behind several
// Go mail servers) on loopback: STARTTLS with a certificate for siem.test, AUTH PLAIN for
// parley/s3cret only after STARTTLS, keeping every message it accepts.
type mailServer struct {
	mu       sync.Mutex
	messages []received
	srv      *smtp.Server
	addr     string
}

type received struct {
	from    string
	to      []string
	user    string
	tls     bool
	message *mail.Message
	body    string
}

type mailSession struct {
	s    *mailServer
	conn *smtp.Conn
	user string
	cur  received
}

func (m *mailSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (m *mailSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "parley" || pass != "s3cret" {
			return errors.New("invalid credentials")
		}
		m.user = user
		return nil
	}), nil
}
func (m *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	if m.user == "" {
		return &smtp.SMTPError{Code: 530, Message: "authentication required"}
	}
	m.cur = received{from: from, user: m.user}
	return nil
}
func (m *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	m.cur.to = append(m.cur.to, to)
	return nil
}
func (m *mailSession) Data(r io.Reader) error {
	msg, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		return err
	}
	_, m.cur.tls = m.conn.TLSConnectionState()
	m.cur.message, m.cur.body = msg, string(body)
	m.s.mu.Lock()
	m.s.messages = append(m.s.messages, m.cur)
	m.s.mu.Unlock()
	return nil
}
func (m *mailSession) Reset()        {}
func (m *mailSession) Logout() error { return nil }

func newMailServer(t *testing.T, cert *tls.Certificate) *mailServer {
	m := &mailServer{}
	m.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &mailSession{s: m, conn: c}, nil }))
	m.srv.Domain = "siem.test"
	if cert != nil {
		m.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.addr = l.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); _ = m.srv.Serve(l) }()
	t.Cleanup(func() { m.srv.Close(); <-done })
	return m
}

func (m *mailServer) got() []received {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]received(nil), m.messages...)
}

func alerts(n int) []sink.Item {
	out := items("redis-0a1b2c3d", n)
	for i := range out {
		out[i].Record.Alert = true
		out[i].Record.Time = metav1.NewMicroTime(time.Date(2026, 11, 21, 10, 0, i, 0, time.UTC))
	}
	return out
}

// emailSink builds an email sink the way the engine does, from the spec and its Secrets.
func emailSink(t *testing.T, m *mailServer, caPEM []byte, password string, e v1alpha1.EmailSink, base sink.Options) (*sink.Sink, error) {
	e.SMTP, e.From, e.To = m.addr, "parley@example.org", []string{"soc@example.org", "oncall@example.org"}
	e.SecretRef = &v1alpha1.SecretKeyRef{Name: "smtp"}
	e.TLS = &v1alpha1.SinkTLS{CASecretRef: &v1alpha1.SecretKeyRef{Name: "smtp-ca"}, ServerName: "siem.test"}
	spec := &v1alpha1.ActivitySinkSpec{Email: &e}
	dest, err := sink.NewDestination(spec, sink.SecretsIn(map[string]map[string][]byte{
		"smtp":    {sink.KeyUsername: []byte("parley"), sink.KeyPassword: []byte(password)},
		"smtp-ca": {sink.KeyCA: caPEM},
	}))
	if err != nil {
		return nil, err
	}
	return start(t, dest, sink.OptionsFor(spec, base)), nil
}

func tlsMaterial(t *testing.T) (*tls.Certificate, []byte) {
	certFile, keyFile, _ := selfSigned(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	return &cert, caPEM
}

// Alerts offered one by one within the interval arrive as one digest (here when it is full:
// three alerts), over STARTTLS and after AUTH, to every recipient, each alert with its
// key; past maxPerHour the next digest waits, its alerts queued, none lost, until Drain
// (the end of parley run) sends it at once.
func TestEmailDigestOverSTARTTLSWithAuth(t *testing.T) {
	cert, caPEM := tlsMaterial(t)
	m := newMailServer(t, cert)
	base := quick
	base.MaxBatch = 3
	s, err := emailSink(t, m, caPEM, "s3cret", v1alpha1.EmailSink{Interval: &metav1.Duration{Duration: time.Hour}, MaxPerHour: 1}, base)
	if err != nil {
		t.Fatal(err)
	}
	all := alerts(5)
	for _, it := range all[:3] {
		s.Offer(it)
	}
	for s.Stats().Delivered != 3 { // the test's timeout bounds this
		time.Sleep(5 * time.Millisecond)
	}
	got := m.got()
	if len(got) != 1 {
		t.Fatalf("%d messages, want one digest", len(got))
	}
	d := got[0]
	if !d.tls || d.user != "parley" || d.from != "parley@example.org" || strings.Join(d.to, " ") != "soc@example.org oncall@example.org" {
		t.Errorf("digest tls %v user %q from %q to %v", d.tls, d.user, d.from, d.to)
	}
	if subj := d.message.Header.Get("Subject"); subj != "[parley] 3 alerts from redis" {
		t.Errorf("subject %q", subj)
	}
	for _, it := range all[:3] {
		if !strings.Contains(d.body, "key "+it.Key) {
			t.Errorf("the digest lacks %s:\n%s", it.Key, d.body)
		}
	}
	if !strings.Contains(d.body, `2026-11-21T10:00:00Z ALERT redis Input input "PING\r\n"`) {
		t.Errorf("digest body:\n%s", d.body)
	}

	// One digest an hour: the next two alerts wait in the queue.
	s.Offer(all[3:]...)
	if st := s.Stats(); st.Queued != 2 || st.Delivered != 3 || len(m.got()) != 1 {
		t.Fatalf("past the cap: stats %+v, %d messages", st, len(m.got()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Drain(ctx, 5); err != nil {
		t.Fatal(err)
	}
	got = m.got()
	if len(got) != 2 || got[1].message.Header.Get("Subject") != "[parley] 2 alerts from redis" ||
		!strings.Contains(got[1].body, "key "+all[4].Key) {
		t.Errorf("after Drain: %d messages", len(got))
	}
}

// A server without STARTTLS gets nothing (credentials never go in clear), nor does one
// that refuses the password: each attempt fails with the reason, counted.
func TestEmailRefusesWithoutSTARTTLSAndReportsAuthFailure(t *testing.T) {
	cert, caPEM := tlsMaterial(t)
	for name, c := range map[string]struct {
		cert     *tls.Certificate
		password string
		want     string
	}{
		"no STARTTLS":    {nil, "s3cret", "does not offer STARTTLS"},
		"wrong password": {cert, "guess", "AUTH PLAIN as parley"},
	} {
		t.Run(name, func(t *testing.T) {
			m := newMailServer(t, c.cert)
			s, err := emailSink(t, m, caPEM, c.password, v1alpha1.EmailSink{}, quick)
			if err != nil {
				t.Fatal(err)
			}
			s.Offer(alerts(1)...)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = s.Drain(ctx, 0) // ends the interval: the digest is tried at once
			for s.Stats().Failed == 0 {
				time.Sleep(5 * time.Millisecond)
			}
			if st := s.Stats(); !strings.Contains(st.LastError, c.want) || st.Delivered != 0 || len(m.got()) != 0 {
				t.Errorf("stats %+v, %d messages; want an error with %q", st, len(m.got()), c.want)
			}
		})
	}
}
