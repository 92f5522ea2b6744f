// Package admission is the operator's validating admission webhook (docs/operator.md,
// "Admission"): the API server asks it before it stores a ConversationRules or an
// ExternalConnector, and it refuses what cannot work with every error and its field path,
// as `parley check` prints them, and returns the rules' lint warnings, which kubectl prints.
//
// It answers CREATE and UPDATE only; an update that leaves the spec as it was is always
// let through, so that objects stored before the webhook (or before a stricter version of
// it) can still be labelled, have their finalizers removed, and be deleted. The rules
// controller's Valid condition stays the authority for what runs: the webhook refuses early,
// it does not decide.
//
// Its serving certificate comes from the operator's own PKI (engine/pki, in a Secret of its
// own), and the operator injects that CA into the ValidatingWebhookConfiguration at start
// and on every CA rotation; or, with Options.CertDir, from files another issuer keeps
// (cert-manager), which then injects the CA itself.
package admission

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/fields"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/engine/pki"
)

// The webhooks, one per kind, as the API server is told to call them. `make manifests`
// turns these markers into config/webhook/manifests.yaml, which the chart renders and the
// tests install. CREATE and UPDATE only: a DELETE is never sent here.
//
// +kubebuilder:webhook:path=/validate-parley-io-v1alpha1-conversationrules,mutating=false,failurePolicy=ignore,sideEffects=None,groups=parley.io,resources=conversationrules,verbs=create;update,versions=v1alpha1,name=conversationrules.validate.parley.io,admissionReviewVersions=v1
// +kubebuilder:webhook:path=/validate-parley-io-v1alpha1-externalconnector,mutating=false,failurePolicy=ignore,sideEffects=None,groups=parley.io,resources=externalconnectors,verbs=create;update,versions=v1alpha1,name=externalconnectors.validate.parley.io,admissionReviewVersions=v1
// +kubebuilder:webhook:path=/validate-parley-io-v1alpha1-activitysink,mutating=false,failurePolicy=ignore,sideEffects=None,groups=parley.io,resources=activitysinks,verbs=create;update,versions=v1alpha1,name=activitysinks.validate.parley.io,admissionReviewVersions=v1

// The operator patches the caBundle of this one ValidatingWebhookConfiguration, and may
// touch no other (RBAC by name).
//
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=get;list;watch;patch,resourceNames=parley-validating-webhook

// ConfigurationName is the ValidatingWebhookConfiguration the chart installs and the
// operator injects its CA into. It is one per cluster, as the CRDs are, and fixed, so that
// the operator's RBAC can name it.
const ConfigurationName = "parley-validating-webhook"

// SkipDeletingObjects is the CEL match condition the chart puts on every webhook: an object
// that is being deleted is never sent to the webhook, so that removing its finalizers is
// never blocked, even with failurePolicy Fail while the operator is down.
const SkipDeletingObjects = "!has(object.metadata.deletionTimestamp)"

// DefaultPort is where the webhook server listens unless told otherwise (the engine has
// 9443).
const DefaultPort = 9444

// kind is one kind the webhook validates: the path its webhook marker above names, and the
// handler. To validate another kind, add a marker above, a row in registrations, and its
// validator (a pure policy function and a type implementing admission.Validator, as
// connector.go has them); the envtest suite installs whatever the markers generate.
type kind struct {
	path    string
	handler func() *admission.Webhook
}

// registrations are the kinds the webhook validates. ActivitySink goes here, with its
// marker above.
func registrations(mgr ctrl.Manager) []kind {
	s := mgr.GetScheme()
	return []kind{
		{"/validate-parley-io-v1alpha1-conversationrules", func() *admission.Webhook {
			return admission.WithValidator[*v1alpha1.ConversationRules](s, RulesValidator{})
		}},
		{"/validate-parley-io-v1alpha1-externalconnector", func() *admission.Webhook {
			return admission.WithValidator[*v1alpha1.ExternalConnector](s, ConnectorValidator{})
		}},
		{"/validate-parley-io-v1alpha1-activitysink", func() *admission.Webhook {
			return admission.WithValidator[*v1alpha1.ActivitySink](s, ActivitySinkValidator{})
		}},
	}
}

// Options configure the webhook.
type Options struct {
	// BindAddress is where the webhook server listens, host:port (":9444").
	BindAddress string
	// CertDir, if set, holds tls.crt and tls.key, kept by another issuer (cert-manager),
	// reloaded when they change; the operator then neither issues a certificate nor injects
	// a CA. Empty: the operator's own PKI.
	CertDir string
	// SecretNamespace and SecretName locate the Secret of the webhook's CA and serving
	// certificate (without CertDir), which the operator makes and renews.
	SecretNamespace, SecretName string
	// Hosts are the names (or IP addresses) the API server dials: the webhook Service's
	// names, or the host of the chart's webhook.address. They go into the serving
	// certificate.
	Hosts []string
	// ConfigurationName is the ValidatingWebhookConfiguration to inject the CA into;
	// ConfigurationName if empty.
	ConfigurationName string
	// CheckInterval is how often the PKI re-reads its Secret; pki.DefaultCheckInterval if
	// zero.
	CheckInterval time.Duration
}

// CacheByObject limits the manager's cache of ValidatingWebhookConfigurations to the one
// the operator injects its CA into: the cache lists and watches it by name, which the
// operator's RBAC (by resource name) allows, and holds no other.
func CacheByObject(name string) (client.Object, cache.ByObject) {
	if name == "" {
		name = ConfigurationName
	}
	return &admissionregistrationv1.ValidatingWebhookConfiguration{},
		cache.ByObject{Field: fields.OneTermEqualSelector("metadata.name", name)}
}

// Setup adds the webhook server to mgr with the validators of every kind, its certificate
// (the operator's PKI, or CertDir) and, with the PKI, the controller that injects the CA
// into the ValidatingWebhookConfiguration. The manager's /readyz includes the server once it
// serves (a TLS handshake succeeds: its certificate is loaded). The manager's cache must
// have been made with CacheByObject when the PKI is used.
func Setup(mgr ctrl.Manager, o Options) error {
	host, portStr, err := net.SplitHostPort(o.BindAddress)
	if err != nil {
		return fmt.Errorf("webhook bind address %q: want host:port: %w", o.BindAddress, err)
	}
	var port int
	if _, err := fmt.Sscanf(portStr, "%d", &port); err != nil || port <= 0 || port > 65535 {
		return fmt.Errorf("webhook bind address %q: port must be 1-65535", o.BindAddress)
	}
	if o.ConfigurationName == "" {
		o.ConfigurationName = ConfigurationName
	}
	opts := webhook.Options{Host: host, Port: port, CertDir: o.CertDir}
	if o.CertDir == "" {
		certs, err := newPKI(mgr, o)
		if err != nil {
			return err
		}
		opts.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.GetCertificate = certs.GetCertificate }}
		if err := setupInjector(mgr, certs, o.ConfigurationName); err != nil {
			return err
		}
	}
	server := webhook.NewServer(opts)
	for _, k := range registrations(mgr) {
		server.Register(k.path, k.handler())
	}
	if err := mgr.Add(server); err != nil {
		return err
	}
	return mgr.AddReadyzCheck("webhook", server.StartedChecker())
}

// newPKI is the webhook's CA and serving certificate for hosts, kept in their own Secret:
// the engine's CA is handed to connector pods, this one to the API server, and either can
// be rotated without the other.
func newPKI(mgr ctrl.Manager, o Options) (*pki.Manager, error) {
	if o.SecretNamespace == "" || o.SecretName == "" {
		return nil, errors.New("webhook: the Secret for its certificate needs a name and a namespace (--webhook-secret, --engine-namespace or $POD_NAMESPACE)")
	}
	if len(o.Hosts) == 0 {
		return nil, errors.New("webhook: no host names for its serving certificate (--webhook-hosts): the API server could not verify it")
	}
	certs := &pki.Manager{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Namespace: o.SecretNamespace, SecretName: o.SecretName,
		CheckInterval: o.CheckInterval,
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			certs.IPAddresses = append(certs.IPAddresses, ip)
		} else {
			certs.DNSNames = append(certs.DNSNames, h)
		}
	}
	if err := mgr.Add(certs); err != nil {
		return nil, err
	}
	return certs, nil
}
