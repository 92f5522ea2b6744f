package sink

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/smtp"
	"slices"
	"strings"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// Email defaults (the API's).
const (
	DefaultEmailInterval   = 5 * time.Minute
	DefaultEmailMaxPerHour = 12
	// emailMaxBatch bounds the alerts of one digest; more wait for the next.
	emailMaxBatch = 1000
)

// Email sends each batch as one digest message over SMTP, always after STARTTLS, with
// AUTH PLAIN when it has credentials. net/smtp is enough for a client that sends a message
// now and then: no dependency.
type Email struct {
	addr, host string
	from       string
	to         []string
	user, pass string
	tls        *tls.Config
	timeout    time.Duration
}

// NewEmail sends to the SMTP server at addr (host:port) from from to to; user and pass
// ("" for none) authenticate after STARTTLS, which tlsConfig (nil: the system's CAs, the
// host's name) verifies.
func NewEmail(addr, from string, to []string, user, pass string, tlsConfig *tls.Config) (*Email, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("email: smtp %q: %w", addr, err)
	}
	if tlsConfig == nil {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if tlsConfig.ServerName == "" {
		tlsConfig = tlsConfig.Clone()
		tlsConfig.ServerName = host
	}
	return &Email{addr: addr, host: host, from: from, to: slices.Clone(to), user: user, pass: pass, tls: tlsConfig, timeout: time.Minute}, nil
}

// EmailOptions are the sink options of an email destination: a digest gathers what
// arrives within interval (default 5m), and at most maxPerHour (default 12) are sent an
// hour, what waits going into the next.
func EmailOptions(e *v1alpha1.EmailSink, o Options) Options {
	o.Linger = DefaultEmailInterval
	if e.Interval != nil && e.Interval.Duration > 0 {
		o.Linger = e.Interval.Duration
	}
	perHour := DefaultEmailMaxPerHour
	if e.MaxPerHour > 0 {
		perHour = int(e.MaxPerHour)
	}
	o.MinInterval = time.Hour / time.Duration(perHour)
	if o.MaxBatch <= 0 || o.MaxBatch > emailMaxBatch {
		o.MaxBatch = emailMaxBatch
	}
	return o
}

// Deliver implements Destination: one SMTP session, one message.
func (e *Email) Deliver(ctx context.Context, batch []Item) error {
	if err := e.send(ctx, Digest(e.from, e.to, time.Now(), batch)); err != nil {
		return fmt.Errorf("email via %s: %w", e.addr, err)
	}
	return nil
}

func (e *Email) send(ctx context.Context, msg []byte) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", e.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline := time.Now().Add(e.timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	stop := wakeWhenDone(ctx, conn.SetDeadline)
	defer stop()
	c, err := smtp.NewClient(conn, e.host)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("parley"); err != nil {
		return err
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		return errors.New("the server does not offer STARTTLS, which Parley requires before sending alerts")
	}
	if err := c.StartTLS(e.tls); err != nil {
		return fmt.Errorf("STARTTLS: %w", err)
	}
	if e.user != "" {
		if err := c.Auth(smtp.PlainAuth("", e.user, e.pass, e.host)); err != nil {
			return fmt.Errorf("AUTH PLAIN as %s: %w", e.user, err)
		}
	}
	if err := c.Mail(e.from); err != nil {
		return err
	}
	for _, to := range e.to {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("RCPT TO %s: %w", to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// Close implements Destination.
func (e *Email) Close() error { return nil }

// Digest is the message of one digest: a subject counting the alerts and naming the
// connectors, then one paragraph per activity (time, summary, key), quoted-printable.
func Digest(from string, to []string, now time.Time, batch []Item) []byte {
	batch = slices.DeleteFunc(slices.Clone(batch), func(it Item) bool { return it.Record == nil }) // checkpoints are not for people
	for i := range batch {
		batch[i].Record, batch[i].Partial = batch[i].Activity(), false
	}
	var connectors []string
	for _, it := range batch {
		if !slices.Contains(connectors, it.Record.Connector) {
			connectors = append(connectors, it.Record.Connector)
		}
	}
	noun := "alerts"
	if len(batch) == 1 {
		noun = "alert"
	}
	subject := fmt.Sprintf("[parley] %d %s from %s", len(batch), noun, strings.Join(connectors, ", "))
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\n", from)
	fmt.Fprintf(&b, "To: %s\r\n", strings.Join(to, ", "))
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", subject))
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@parley>\r\n", hex.EncodeToString(id))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(&b)
	for _, it := range batch {
		a := it.Record
		fmt.Fprintf(qp, "%s %s\r\n  key %s\r\n\r\n", a.Time.UTC().Format(time.RFC3339), digestLine(a), it.Key)
	}
	_ = qp.Close()
	return b.Bytes()
}

// digestLine is Summary without Slack's markup.
func digestLine(a *v1alpha1.ActivityRecord) string {
	s := Summary(a)
	s = strings.Replace(s, ":rotating_light: ", "", 1)
	s = strings.Replace(s, "*"+slackEscape(a.Connector)+"*", a.Connector, 1)
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
}
