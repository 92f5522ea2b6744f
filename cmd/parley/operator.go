package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/parley-dev/parley/admission"
	"github.com/parley-dev/parley/evidence"
	"github.com/parley-dev/parley/internal/operator"
)

func newOperatorCommand() *cobra.Command {
	o := operator.Options{Zap: zap.Options{Development: false}}
	var evidenceKey string
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Run the Parley operator: the controllers of ConversationRules, ExternalConnectors and Activities",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if evidenceKey != "" {
				key, err := evidence.ReadPrivateKey(evidenceKey)
				if err != nil {
					return fmt.Errorf("--evidence-key-file: %w", err)
				}
				o.Engine.SignKey = key
			}
			// SIGTERM (a pod deleted, a rollout) stops the manager gracefully: the engine
			// tells connector pods to redial, writes its last status counters, and the
			// Lease is released for the next leader at once.
			ctx, stop := untilSignalled(cmd.Context(), nil)
			defer stop()
			return operator.Run(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Engine.SigningSecret, "evidence-secret", "parley-evidence", "Secret, in --engine-namespace, with the Ed25519 key that signs evidence checkpoints into the activity log (made when missing; its signing.pub is what parley verify --key takes)")
	f.StringVar(&evidenceKey, "evidence-key-file", "", "PEM Ed25519 private key (PKCS #8) to sign evidence checkpoints with, instead of --evidence-secret")
	f.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
	f.BoolVar(&o.MetricsSecure, "metrics-secure", true, "serve metrics over HTTPS to clients the API server authenticates and authorizes to get /metrics (false: plain HTTP to anyone)")
	f.StringVar(&o.MetricsCertDir, "metrics-cert-dir", "", "directory of tls.crt and tls.key for the secure metrics endpoint, kept by another issuer (cert-manager); default: a self-signed certificate made at start")
	f.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz probes")
	f.BoolVar(&o.LeaderElect, "leader-elect", true, "elect a leader so that one replica reconciles at a time")
	f.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader election Lease (default: the pod's)")
	f.IntVar(&o.Concurrent, "concurrent", 4, "objects of each kind (ConversationRules, ExternalConnectors, ActivitySinks, retention passes) reconciled at once")
	f.StringVar(&o.Namespaces, "namespaces", "", "comma-separated namespaces to watch (default: all)")
	f.StringVar(&o.ConnectorImage, "connector-image", operator.DefaultConnectorImage, "image of the connector pods")
	f.StringVar(&o.EngineAddress, "engine-address", "", "host:port connector pods dial to reach the engine (default parley-engine.<engine namespace>.svc:<engine port>)")
	f.StringVar(&o.Engine.BindAddress, "engine-bind-address", ":9443", "address the engine's gRPC server listens on (0 disables the engine)")
	f.StringVar(&o.Engine.SecretName, "engine-secret", "parley-engine-tls", "Secret holding the engine's CA and serving certificate (made and renewed by the operator)")
	f.StringVar(&o.Engine.SecretNamespace, "engine-namespace", os.Getenv("POD_NAMESPACE"), "namespace of --engine-secret (default: $POD_NAMESPACE)")
	f.StringVar(&o.Engine.Pod.Name, "pod-name", os.Getenv("POD_NAME"), "the operator's own pod (default: $POD_NAME), in $POD_NAMESPACE: the engine's leader labels it "+operator.LabelEngineLeader+" for the engine Service; empty: no label")
	f.StringSliceVar(&o.Engine.DNSNames, "engine-dns-names", nil, "extra names in the engine's serving certificate (the host of --engine-address is always in it)")
	f.StringVar(&o.Webhook.BindAddress, "webhook-bind-address", fmt.Sprintf(":%d", admission.DefaultPort), "address the validating admission webhook listens on (0 disables it)")
	f.StringVar(&o.Webhook.CertDir, "webhook-cert-dir", "", "directory of tls.crt and tls.key for the webhook, kept by another issuer (cert-manager); default: the operator issues them and injects its CA into the ValidatingWebhookConfiguration "+admission.ConfigurationName)
	f.StringVar(&o.Webhook.SecretName, "webhook-secret", "parley-webhook-tls", "Secret, in --engine-namespace, holding the webhook's CA and serving certificate (made and renewed by the operator; unused with --webhook-cert-dir)")
	f.StringSliceVar(&o.Webhook.Hosts, "webhook-hosts", nil, "names or IP addresses the API server dials to reach the webhook, for its serving certificate (default parley-webhook.<engine namespace>.svc)")
	f.Float64Var(&o.Engine.ActivityQPS, "activity-qps", 50, "Activity objects written per second at most, for all connectors together")
	f.IntVar(&o.Engine.ActivityBurst, "activity-burst", 300, "burst of Activity writes above --activity-qps")
	f.IntVar(&o.Engine.AlertEvents, "alert-events", 30, "alert Events per connector and minute at most; the alerts beyond are counted in one AlertsSuppressed Event a minute")
	f.Int32Var(&o.Retention.MaxCount, "activity-max-count", 1000, "Activities kept per connector whose spec.activities.maxCount is unset (0: no limit)")
	f.DurationVar(&o.Retention.TTL, "activity-ttl", 7*24*time.Hour, "age at which Activities expire when their connector's spec.activities.ttl is unset, and Activities kept after their connector was deleted (0: never)")
	f.IntVar(&o.Engine.ActivityQueue, "activity-queue", 10000, "activities waiting to be written before new ones are dropped (and counted)")
	f.Int64Var(&o.Engine.ActivityQueueBytes, "activity-queue-budget", 64<<20, "bytes of activities waiting to be written before new ones are dropped (and counted)")
	f.StringVar(&o.SharedMemoryURL, "shared-memory-url", "", "Redis or Valkey store of shared variables (memory.shared) handed to every connector through its engine Secret: redis://host:port/db, or rediss:// for TLS, without a password (default: none, each connector pod keeps its own)")
	f.StringVar(&o.SharedMemoryPasswordFile, "shared-memory-password-file", "", "file holding the password of --shared-memory-url (a mounted Secret)")
	f.StringVar(&o.SharedMemoryCAFile, "shared-memory-ca-file", "", "PEM CA the rediss:// server's certificate must chain to (a mounted Secret or ConfigMap)")
	goflags := flag.NewFlagSet("zap", flag.ContinueOnError)
	o.Zap.BindFlags(goflags)
	f.AddGoFlagSet(goflags)
	// controller-runtime registers --kubeconfig on the standard flag set, which cobra does
	// not parse; without it, KUBECONFIG or the in-cluster config is used.
	if kc := flag.CommandLine.Lookup("kubeconfig"); kc != nil {
		f.AddGoFlag(kc)
	}
	return cmd
}
