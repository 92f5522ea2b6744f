package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/parley-dev/parley/engine/pki"
)

// Config is the engine as `parley operator` sets it up.
type Config struct {
	Options
	// Address is what connector pods dial; its host is put in the serving certificate.
	// Default parley-engine.<SecretNamespace>.svc:<port of BindAddress>.
	Address string
	// SecretName and SecretNamespace locate the Secret of the engine's CA and serving
	// certificate, which the operator makes and renews.
	SecretName, SecretNamespace string
	// DNSNames are more names for the serving certificate (the engine Service's).
	DNSNames []string
	// Pod is the operator's own pod ($POD_NAMESPACE, $POD_NAME): the leader labels it with
	// LabelEngineLeader, which the engine Service selects. Empty outside a pod (no label).
	Pod types.NamespacedName
	// SigningSecret, in SecretNamespace, holds the Ed25519 key that signs evidence
	// checkpoints (made when missing) unless Options.SignKey is given; "" signs nothing.
	SigningSecret string
}

// Setup adds the engine and its PKI to mgr. The engine listens once its certificate is
// loaded.
func Setup(ctx context.Context, mgr ctrl.Manager, cfg Config) (*Engine, error) {
	if cfg.SecretNamespace == "" || cfg.SecretName == "" {
		return nil, errors.New("engine: the Secret for its certificates needs a name and a namespace (--engine-secret, --engine-namespace or $POD_NAMESPACE)")
	}
	_, port, err := net.SplitHostPort(cfg.BindAddress)
	if err != nil {
		return nil, fmt.Errorf("engine bind address %q: %w", cfg.BindAddress, err)
	}
	if cfg.Address == "" {
		cfg.Address = net.JoinHostPort("parley-engine."+cfg.SecretNamespace+".svc", port)
	}
	host, _, err := net.SplitHostPort(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("engine address %q: want host:port: %w", cfg.Address, err)
	}
	certs := &pki.Manager{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Namespace: cfg.SecretNamespace, SecretName: cfg.SecretName,
		DNSNames: append([]string(nil), cfg.DNSNames...),
	}
	if ip := net.ParseIP(host); ip != nil {
		certs.IPAddresses = append(certs.IPAddresses, ip)
	} else {
		certs.DNSNames = append(certs.DNSNames, host)
	}
	if err := mgr.Add(certs); err != nil {
		return nil, err
	}
	opts := cfg.Options
	opts.TLS, opts.TLSReady = certs.ServerTLSConfig(), certs.Ready()
	if opts.SignKey == nil && cfg.SigningSecret != "" {
		if opts.SignKey, err = SigningKey(ctx, mgr.GetClient(), mgr.GetAPIReader(), cfg.SecretNamespace, cfg.SigningSecret); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
	}
	e, err := New(mgr, opts)
	if err != nil {
		return nil, err
	}
	e.address, e.certs = cfg.Address, certs
	if cfg.Pod.Name != "" {
		e.leader = &leaderPod{client: mgr.GetClient(), key: cfg.Pod}
		if err := e.leader.unmarkStale(ctx); err != nil {
			return nil, fmt.Errorf("engine: remove a stale leader label before the election: %w", err)
		}
	}
	if err := e.SetupWithManager(ctx, mgr); err != nil {
		return nil, err
	}
	return e, nil
}

// Address is what connector pods dial.
func (e *Engine) Address() string { return e.address }

// CA returns the PEM of the engine's CA, nil until it is loaded. It does not wait: the
// connector controller calls it in every reconcile, and comes back later while it is nil.
func (e *Engine) CA() []byte { return e.certs.CAPEM() }

// ReadyCheck is a readiness check: a standby is ready (it serves no engine, and the engine
// Service does not select it; failing would only hang the Deployment's rollouts), the
// leader once its engine listens (its certificate is loaded).
func (e *Engine) ReadyCheck(*http.Request) error {
	select {
	case <-e.elected:
	default:
		return nil
	}
	select {
	case <-e.ready:
		return nil
	default:
		return errors.New("elected, but the engine is not listening yet")
	}
}
