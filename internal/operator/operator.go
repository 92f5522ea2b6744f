// Package operator runs the Parley operator process: one controller-runtime manager with
// the controllers and, on the elected leader, the engine connector pods dial.
package operator

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/parley-dev/parley/admission"
	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/sharedmemory"
	"github.com/parley-dev/parley/controllers"
	"github.com/parley-dev/parley/engine"
)

// LabelEngineLeader is the label the engine's leader puts on its own pod, which the engine
// Service selects.
const LabelEngineLeader = engine.LabelEngineLeader

// DefaultConnectorImage runs connector pods unless the operator is told otherwise (the chart
// always passes --connector-image with its own tag).
const DefaultConnectorImage = "ghcr.io/parley-dev/parley:latest"

// Options are the operator's settings, one per `parley operator` flag.
type Options struct {
	MetricsAddr, ProbeAddr string
	// MetricsSecure serves metrics over HTTPS to authenticated and authorized clients only
	// (see MetricsServerOptions); false serves plain HTTP to anyone who can reach the port.
	MetricsSecure bool
	// MetricsCertDir holds tls.crt and tls.key for secure metrics, kept by another issuer
	// (cert-manager); empty: a self-signed certificate made at start.
	MetricsCertDir          string
	LeaderElect             bool
	LeaderElectionNamespace string
	// Concurrent is how many objects of one kind are reconciled at once (--concurrent): a
	// reconcile of a connector is a few API writes in a row, so one at a time leaves the
	// API server idle between them while a thousand connectors wait.
	Concurrent int
	// Namespaces is a comma-separated list of namespaces to watch; empty watches all.
	Namespaces string
	Zap        zap.Options
	controllers.Defaults
	Engine engine.Config
	// Webhook is the validating admission webhook; BindAddress "0" disables it. Its Secret
	// lives in the engine's namespace; Hosts default to the chart's webhook Service.
	Webhook admission.Options
	// SharedMemoryURL names the Redis or Valkey store of shared variables handed to every
	// connector (--shared-memory-url); its password and CA come from files
	// (--shared-memory-password-file, --shared-memory-ca-file: a mounted Secret or
	// ConfigMap), so that the password is never a flag value in the operator's pod spec, and
	// read again when they change (SharedMemoryWatch): a rotated password needs no restart.
	SharedMemoryURL, SharedMemoryPasswordFile, SharedMemoryCAFile string
}

// sharedMemory reads the store's settings: a redis:// or rediss:// URL without a password,
// and the files beside it.
func (o *Options) sharedMemory() (controllers.SharedMemory, error) {
	var m controllers.SharedMemory
	if o.SharedMemoryURL == "" {
		if o.SharedMemoryPasswordFile != "" || o.SharedMemoryCAFile != "" {
			return m, errors.New("--shared-memory-password-file and --shared-memory-ca-file need --shared-memory-url")
		}
		return m, nil
	}
	u, err := url.Parse(o.SharedMemoryURL)
	switch {
	case err != nil:
		return m, fmt.Errorf("--shared-memory-url: %w", err)
	case u.Scheme != "redis" && u.Scheme != "rediss":
		return m, fmt.Errorf("--shared-memory-url %s: want redis://host:port/db or rediss:// for TLS", u.Redacted())
	case u.Host == "":
		return m, fmt.Errorf("--shared-memory-url %s: no host", u.Redacted())
	}
	if err := sharedmemory.CheckURL(o.SharedMemoryURL); err != nil {
		return m, fmt.Errorf("--shared-memory-url %s: %w", u.Redacted(), err)
	}
	if _, set := u.User.Password(); set {
		return m, fmt.Errorf("--shared-memory-url %s: holds a password; give it in --shared-memory-password-file (the chart's sharedMemory.existingSecret) so that it stays out of the pod spec", u.Redacted())
	}
	m.URL = o.SharedMemoryURL
	if f := o.SharedMemoryPasswordFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return m, fmt.Errorf("--shared-memory-password-file: %w", err)
		}
		if m.Password = bytes.TrimRight(b, "\r\n"); len(m.Password) == 0 {
			return m, fmt.Errorf("--shared-memory-password-file %s is empty", f)
		}
	}
	if f := o.SharedMemoryCAFile; f != "" {
		if u.Scheme != "rediss" {
			return m, fmt.Errorf("--shared-memory-ca-file needs a rediss:// --shared-memory-url, not %s", u.Redacted())
		}
		if m.CA, err = os.ReadFile(f); err != nil {
			return m, fmt.Errorf("--shared-memory-ca-file: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(m.CA) {
			return m, fmt.Errorf("--shared-memory-ca-file %s: no PEM certificate in it", f)
		}
	}
	return m, nil
}

// The metrics endpoint asks the API server who a scraper is and whether it may get
// /metrics (TokenReview, SubjectAccessReview).
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// MetricsServerOptions are the manager's metrics server at addr ("0": none). Secure, it
// serves HTTPS with the certificate in certDir, or a self-signed one the manager makes at
// start when certDir is empty (scrapers then skip its verification) and lets through only requests whose bearer
// token the API server authenticates and whose user may get the non-resource URL /metrics
// (the chart's ClusterRole <fullname>-metrics-reader grants it): the metrics name every
// namespace and connector. Insecure, it serves plain HTTP to anyone.
func MetricsServerOptions(addr string, secure bool, certDir string) metricsserver.Options {
	o := metricsserver.Options{BindAddress: addr}
	if secure {
		o.SecureServing = true
		o.FilterProvider = filters.WithAuthenticationAndAuthorization
		o.CertDir = certDir // tls.crt and tls.key, reloaded when they change
	}
	return o
}

// Run runs the operator until ctx is done.
func Run(ctx context.Context, o Options) error {
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.Zap)))
	shared, err := NewSharedMemoryWatch(o)
	if err != nil {
		return err
	}
	if shared != nil {
		o.SharedMemory = shared.Live()
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("find the cluster (kubeconfig or in-cluster): %w", err)
	}
	opts := ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 MetricsServerOptions(o.MetricsAddr, o.MetricsSecure, o.MetricsCertDir),
		HealthProbeBindAddress:  o.ProbeAddr,
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        "parley-operator.parley.io",
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		// A replica that stops hands over at once, not after the lease expires: it steps
		// down once its runnables (the engine among them) have stopped, and the process ends.
		LeaderElectionReleaseOnCancel: true,
		Cache:                         controllers.CacheOptions(),
		Controller:                    config.Controller{MaxConcurrentReconciles: o.Concurrent},
	}
	webhookOn := o.Webhook.BindAddress != "" && o.Webhook.BindAddress != "0"
	if webhookOn && o.Webhook.CertDir == "" {
		obj, byObject := admission.CacheByObject(o.Webhook.ConfigurationName)
		opts.Cache.ByObject[obj] = byObject
	}
	if o.Namespaces != "" {
		opts.Cache.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range strings.Split(o.Namespaces, ",") {
			opts.Cache.DefaultNamespaces[strings.TrimSpace(ns)] = cache.Config{}
		}
	}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return fmt.Errorf("create the manager: %w", err)
	}
	if o.Engine.BindAddress != "0" {
		o.Engine.Address = o.EngineAddress
		if o.Engine.Pod.Name != "" && o.Engine.Pod.Namespace == "" {
			o.Engine.Pod.Namespace = os.Getenv("POD_NAMESPACE")
		}
		e, err := engine.Setup(ctx, mgr, o.Engine)
		if err != nil {
			return err
		}
		o.EngineAddress, o.Ender, o.EngineCA = e.Address(), e, e.CA
		// The engine Service sends connector pods to the leader once its engine is ready;
		// a standby is ready too (it serves the webhook, and rollouts wait for readiness).
		if err := mgr.AddReadyzCheck("engine", e.ReadyCheck); err != nil {
			return err
		}
	}
	if err := controllers.Setup(mgr, o.Defaults); err != nil {
		return err
	}
	if shared != nil {
		if err := mgr.Add(shared); err != nil {
			return err
		}
	}
	if webhookOn {
		if o.Webhook.SecretNamespace == "" {
			o.Webhook.SecretNamespace = o.Engine.SecretNamespace
		}
		if len(o.Webhook.Hosts) == 0 && o.Webhook.SecretNamespace != "" {
			o.Webhook.Hosts = []string{"parley-webhook." + o.Webhook.SecretNamespace + ".svc"}
		}
		// Registered before the manager starts, its /readyz check included: a replica is
		// ready once it answers admission reviews too.
		if err := admission.Setup(mgr, o.Webhook); err != nil {
			return err
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctx)
}
