package sink

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// SecretValue returns the value of key in the Secret name of the sink's namespace; an
// error when the Secret or the key is missing. The engine reads Secrets from the API
// server, `parley run` from the Secret documents of its files.
type SecretValue func(name, key string) ([]byte, error)

// NewDestination builds the destination spec sets, reading what it needs from Secrets
// through secret. The spec must be valid (Validate).
func NewDestination(spec *v1alpha1.ActivitySinkSpec, secret SecretValue) (Destination, error) {
	switch {
	case spec.Webhook != nil:
		w := spec.Webhook
		var key []byte
		if w.SecretRef != nil {
			var err error
			if key, err = secret(w.SecretRef.Name, keyOr(w.SecretRef.Key, KeyHMAC)); err != nil {
				return nil, fmt.Errorf("webhook HMAC key: %w", err)
			}
		}
		tc, err := TLSConfig(w.TLS, secret)
		if err != nil {
			return nil, fmt.Errorf("webhook TLS: %w", err)
		}
		return NewWebhook(w.URL, w.Format, key, tc), nil
	case spec.Syslog != nil:
		s := spec.Syslog
		tc, err := TLSConfig(s.TLS, secret)
		if err != nil {
			return nil, fmt.Errorf("syslog TLS: %w", err)
		}
		return NewSyslog(s.Address, s.Format, s.Facility, tc)
	case spec.Kafka != nil:
		k := spec.Kafka
		tc, err := TLSConfig(k.TLS, secret)
		if err != nil {
			return nil, fmt.Errorf("kafka TLS: %w", err)
		}
		mech, err := KafkaMechanism(k.SASL, secret)
		if err != nil {
			return nil, err
		}
		return NewKafka(k.Brokers, k.Topic, tc, mech)
	case spec.Email != nil:
		e := spec.Email
		var user, pass []byte
		if r := e.SecretRef; r != nil && r.Name != "" {
			var err error
			if user, err = secret(r.Name, KeyUsername); err != nil {
				return nil, fmt.Errorf("email SMTP AUTH: %w", err)
			}
			if pass, err = secret(r.Name, KeyPassword); err != nil {
				return nil, fmt.Errorf("email SMTP AUTH: %w", err)
			}
		}
		tc, err := TLSConfig(e.TLS, secret)
		if err != nil {
			return nil, fmt.Errorf("email TLS: %w", err)
		}
		return NewEmail(e.SMTP, e.From, e.To, string(user), string(pass), tc)
	}
	return nil, errors.New("no destination: set exactly one of webhook, syslog, kafka or email")
}

// OptionsFor are the sink options of spec's destination from the base ones: an email
// destination gathers digests (EmailOptions).
func OptionsFor(spec *v1alpha1.ActivitySinkSpec, base Options) Options {
	if spec.Email != nil {
		return EmailOptions(spec.Email, base)
	}
	return base
}

// TakesCheckpoints says whether a sink carries the engine's signed checkpoints beside the
// activities: the machine-readable destinations (JSON webhook, Kafka, RFC 5424 syslog),
// whose output parley verify reads; not Slack, CEF or email, which are for people or a
// format with no place for them.
func TakesCheckpoints(spec *v1alpha1.ActivitySinkSpec) bool {
	switch {
	case spec.Webhook != nil:
		return spec.Webhook.Format == "" || spec.Webhook.Format == v1alpha1.WebhookJSON
	case spec.Syslog != nil:
		return spec.Syslog.Format == "" || spec.Syslog.Format == v1alpha1.SyslogRFC5424
	case spec.Kafka != nil:
		return true
	}
	return false
}

// FilterOf is the filter a sink applies: its spec's, and alerts only for email, which
// mails alerts.
func FilterOf(spec *v1alpha1.ActivitySinkSpec) v1alpha1.SinkFilter {
	f := *spec.Filter.DeepCopy()
	if spec.Email != nil {
		f.AlertsOnly = true
	}
	return f
}

func keyOr(key, def string) string {
	if key == "" {
		return def
	}
	return key
}

// TLSConfig is the client TLS configuration t describes: nil for nil (the destination's
// default), else the CA bundle from its Secret (the system's CAs without one), the server
// name and insecureSkipVerify. TLS 1.2 at least.
func TLSConfig(t *v1alpha1.SinkTLS, secret SecretValue) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // the user's choice, documented
	if r := t.CASecretRef; r != nil && r.Name != "" {
		pem, err := secret(r.Name, keyOr(r.Key, KeyCA))
		if err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA bundle in Secret %q key %q: no PEM certificate in it", r.Name, keyOr(r.Key, KeyCA))
		}
		c.RootCAs = pool
	}
	return c, nil
}

// KafkaMechanism is the SASL mechanism s names (PLAIN by default) with the username and
// password of its Secret; nil for nil.
func KafkaMechanism(s *v1alpha1.KafkaSASL, secret SecretValue) (sasl.Mechanism, error) {
	if s == nil {
		return nil, nil
	}
	user, err := secret(s.SecretRef.Name, KeyUsername)
	if err != nil {
		return nil, fmt.Errorf("kafka SASL: %w", err)
	}
	pass, err := secret(s.SecretRef.Name, KeyPassword)
	if err != nil {
		return nil, fmt.Errorf("kafka SASL: %w", err)
	}
	switch s.Mechanism {
	case "", "PLAIN":
		return plain.Auth{User: string(user), Pass: string(pass)}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: string(user), Pass: string(pass)}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: string(user), Pass: string(pass)}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("kafka SASL mechanism %q: want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.Mechanism)
}

// SecretsIn is a SecretValue over Secrets' data by name, as read from files or the API.
func SecretsIn(secrets map[string]map[string][]byte) SecretValue {
	return func(name, key string) ([]byte, error) {
		data, ok := secrets[name]
		if !ok {
			return nil, fmt.Errorf("no Secret %q", name)
		}
		v, ok := data[key]
		if !ok || len(v) == 0 {
			return nil, fmt.Errorf("no key %q in Secret %q", key, name)
		}
		return v, nil
	}
}
