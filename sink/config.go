// Package sink delivers activities out of the cluster to ActivitySinks' destinations
// (webhook, syslog, Kafka, email), each through its own bounded queue with batching and
// retries, and validates ActivitySink specs. The engine and `parley run` feed it; the
// ActivitySink controller validates with it. docs/sinks.md describes the behaviour.
package sink

import (
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// Destination types, as status.type names them.
const (
	TypeWebhook = "Webhook"
	TypeSyslog  = "Syslog"
	TypeKafka   = "Kafka"
	TypeEmail   = "Email"
)

// Default keys of the values destinations read from Secrets.
const (
	KeyHMAC     = "hmacKey"
	KeyCA       = "ca.crt"
	KeyUsername = "username"
	KeyPassword = "password"
)

// Type is the destination the spec sets ("" when none or several are).
func Type(spec *v1alpha1.ActivitySinkSpec) string {
	var types []string
	if spec.Webhook != nil {
		types = append(types, TypeWebhook)
	}
	if spec.Syslog != nil {
		types = append(types, TypeSyslog)
	}
	if spec.Kafka != nil {
		types = append(types, TypeKafka)
	}
	if spec.Email != nil {
		types = append(types, TypeEmail)
	}
	if len(types) != 1 {
		return ""
	}
	return types[0]
}

// Facilities are the syslog facility names and their codes (RFC 5424 §6.2.1).
var Facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

var activityTypes = []v1alpha1.ActivityType{
	v1alpha1.ActivityConnectorStarted, v1alpha1.ActivityConnected, v1alpha1.ActivityGreeted, v1alpha1.ActivityInput,
	v1alpha1.ActivityAsync, v1alpha1.ActivityRejected, v1alpha1.ActivityTimedOut, v1alpha1.ActivityEnded,
	v1alpha1.ActivityBroken, v1alpha1.ActivityError, v1alpha1.ActivityConnectorStopped,
}

// kafkaTopic is what Kafka accepts as a topic name.
var kafkaTopic = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// Validate returns every reason the spec cannot work, each at its field path under path
// (spec): what the API server's schema checks too, for `parley run`, and what it cannot
// (URLs, addresses, e-mail addresses).
func Validate(spec *v1alpha1.ActivitySinkSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	set := 0
	for _, p := range []bool{spec.Webhook != nil, spec.Syslog != nil, spec.Kafka != nil, spec.Email != nil} {
		if p {
			set++
		}
	}
	if set != 1 {
		errs = append(errs, field.Invalid(path, fmt.Sprintf("%d destinations", set), "set exactly one of webhook, syslog, kafka or email"))
	}
	for i, t := range spec.Filter.Types {
		if !slices.Contains(activityTypes, t) {
			errs = append(errs, field.NotSupported(path.Child("filter", "types").Index(i), t, activityTypes))
		}
	}
	if s := spec.ConnectorSelector; s != nil {
		if _, err := selector(s); err != nil {
			errs = append(errs, field.Invalid(path.Child("connectorSelector"), s, err.Error()))
		}
	}
	if w := spec.Webhook; w != nil {
		p := path.Child("webhook")
		u, err := url.Parse(w.URL)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(p.Child("url"), w.URL, err.Error()))
		case u.Scheme != "http" && u.Scheme != "https":
			errs = append(errs, field.Invalid(p.Child("url"), w.URL, "want an http:// or https:// URL"))
		case u.Host == "":
			errs = append(errs, field.Invalid(p.Child("url"), w.URL, "the URL has no host"))
		}
		if w.Format != "" && w.Format != v1alpha1.WebhookJSON && w.Format != v1alpha1.WebhookSlack {
			errs = append(errs, field.NotSupported(p.Child("format"), w.Format, []v1alpha1.WebhookFormat{v1alpha1.WebhookJSON, v1alpha1.WebhookSlack}))
		}
		if w.TLS != nil && u != nil && u.Scheme != "https" {
			errs = append(errs, field.Forbidden(p.Child("tls"), "only for an https:// URL"))
		}
	}
	if s := spec.Syslog; s != nil {
		p := path.Child("syslog")
		u, err := url.Parse(s.Address)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(p.Child("address"), s.Address, err.Error()))
		case u.Scheme != "udp" && u.Scheme != "tcp" && u.Scheme != "tls":
			errs = append(errs, field.Invalid(p.Child("address"), s.Address, "want udp://, tcp:// or tls://host:port"))
		default:
			if err := hostPort(u.Host); err != nil {
				errs = append(errs, field.Invalid(p.Child("address"), s.Address, err.Error()))
			}
			if s.TLS != nil && u.Scheme != "tls" {
				errs = append(errs, field.Forbidden(p.Child("tls"), "only for a tls:// address"))
			}
		}
		if s.Format != "" && s.Format != v1alpha1.SyslogRFC5424 && s.Format != v1alpha1.SyslogCEF {
			errs = append(errs, field.NotSupported(p.Child("format"), s.Format, []v1alpha1.SyslogFormat{v1alpha1.SyslogRFC5424, v1alpha1.SyslogCEF}))
		}
		if _, ok := Facilities[s.Facility]; s.Facility != "" && !ok {
			errs = append(errs, field.Invalid(p.Child("facility"), s.Facility, "want kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp or local0 to local7"))
		}
	}
	if k := spec.Kafka; k != nil {
		p := path.Child("kafka")
		if len(k.Brokers) == 0 {
			errs = append(errs, field.Required(p.Child("brokers"), "at least one broker, host:port"))
		}
		for i, b := range k.Brokers {
			if err := hostPort(b); err != nil {
				errs = append(errs, field.Invalid(p.Child("brokers").Index(i), b, err.Error()))
			}
		}
		if !kafkaTopic.MatchString(k.Topic) {
			errs = append(errs, field.Invalid(p.Child("topic"), k.Topic, "a topic is 1 to 249 of a-z A-Z 0-9 . _ -"))
		}
		if s := k.SASL; s != nil {
			switch s.Mechanism {
			case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
			default:
				errs = append(errs, field.NotSupported(p.Child("sasl", "mechanism"), s.Mechanism, []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}))
			}
			if s.SecretRef.Name == "" {
				errs = append(errs, field.Required(p.Child("sasl", "secretRef", "name"), "the Secret with username and password"))
			}
		}
	}
	if e := spec.Email; e != nil {
		p := path.Child("email")
		if err := hostPort(e.SMTP); err != nil {
			errs = append(errs, field.Invalid(p.Child("smtp"), e.SMTP, err.Error()))
		}
		if _, err := mail.ParseAddress(e.From); err != nil {
			errs = append(errs, field.Invalid(p.Child("from"), e.From, err.Error()))
		}
		if len(e.To) == 0 {
			errs = append(errs, field.Required(p.Child("to"), "at least one recipient"))
		}
		for i, to := range e.To {
			if _, err := mail.ParseAddress(to); err != nil {
				errs = append(errs, field.Invalid(p.Child("to").Index(i), to, err.Error()))
			}
		}
		if e.Interval != nil && e.Interval.Duration <= 0 {
			errs = append(errs, field.Invalid(p.Child("interval"), e.Interval.Duration.String(), "must be positive"))
		}
		if e.MaxPerHour < 0 {
			errs = append(errs, field.Invalid(p.Child("maxPerHour"), e.MaxPerHour, "must be positive"))
		}
	}
	return errs
}

func hostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port: %w", err)
	}
	if host == "" {
		return fmt.Errorf("want host:port: no host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: want 1 to 65535", port)
	}
	return nil
}

// SecretNeed is one value a sink reads from a Secret of its namespace.
type SecretNeed struct {
	Name, Key string
	// Path is the field that names the Secret, for messages.
	Path *field.Path
}

// ReadersOf returns the names of the sinks (of one namespace) that read the Secret name: a
// change of that Secret changes them. Both the controller that validates sinks and the
// engine that delivers through them watch Secrets with it.
func ReadersOf(sinks []v1alpha1.ActivitySink, name string) []types.NamespacedName {
	var out []types.NamespacedName
	for i := range sinks {
		for _, need := range SecretsNeeded(&sinks[i].Spec, field.NewPath("spec")) {
			if need.Name == name {
				out = append(out, types.NamespacedName{Namespace: sinks[i].Namespace, Name: sinks[i].Name})
				break
			}
		}
	}
	return out
}

// SecretsNeeded lists every Secret value the spec reads, with defaults applied to keys.
func SecretsNeeded(spec *v1alpha1.ActivitySinkSpec, path *field.Path) []SecretNeed {
	var needs []SecretNeed
	ref := func(r *v1alpha1.SecretKeyRef, def string, p *field.Path) {
		if r == nil || r.Name == "" {
			return
		}
		key := r.Key
		if key == "" {
			key = def
		}
		needs = append(needs, SecretNeed{Name: r.Name, Key: key, Path: p})
	}
	credentials := func(r *v1alpha1.SecretKeyRef, p *field.Path) {
		if r == nil || r.Name == "" {
			return
		}
		needs = append(needs, SecretNeed{Name: r.Name, Key: KeyUsername, Path: p}, SecretNeed{Name: r.Name, Key: KeyPassword, Path: p})
	}
	tls := func(t *v1alpha1.SinkTLS, p *field.Path) {
		if t != nil {
			ref(t.CASecretRef, KeyCA, p.Child("tls", "caSecretRef"))
		}
	}
	if w := spec.Webhook; w != nil {
		p := path.Child("webhook")
		ref(w.SecretRef, KeyHMAC, p.Child("secretRef"))
		tls(w.TLS, p)
	}
	if s := spec.Syslog; s != nil {
		tls(s.TLS, path.Child("syslog"))
	}
	if k := spec.Kafka; k != nil {
		p := path.Child("kafka")
		tls(k.TLS, p)
		if k.SASL != nil {
			credentials(&k.SASL.SecretRef, p.Child("sasl", "secretRef"))
		}
	}
	if e := spec.Email; e != nil {
		p := path.Child("email")
		credentials(e.SecretRef, p.Child("secretRef"))
		tls(e.TLS, p)
	}
	return needs
}
