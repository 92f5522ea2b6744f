package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/controllers"
	"github.com/parley-dev/parley/engine"
)

type operatorOptions struct {
	metricsAddr, probeAddr  string
	leaderElect             bool
	leaderElectionNamespace string
	namespaces              string
	zap                     zap.Options
	controllers.Defaults
	engine engine.Config
}

func newOperatorCommand() *cobra.Command {
	o := operatorOptions{zap: zap.Options{Development: false}}
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Run the Parley operator: the controllers of ConversationRules, ExternalConnectors and Activities",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runOperator(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
	f.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz probes")
	f.BoolVar(&o.leaderElect, "leader-elect", true, "elect a leader so that one replica reconciles at a time")
	f.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader election Lease (default: the pod's)")
	f.StringVar(&o.namespaces, "namespaces", "", "comma-separated namespaces to watch (default: all)")
	f.StringVar(&o.ConnectorImage, "connector-image", controllers.DefaultConnectorImage, "image of the connector pods")
	f.StringVar(&o.EngineAddress, "engine-address", "", "host:port connector pods dial to reach the engine (default parley-engine.<engine namespace>.svc:<engine port>)")
	f.StringVar(&o.engine.BindAddress, "engine-bind-address", ":9443", "address the engine's gRPC server listens on (0 disables the engine)")
	f.StringVar(&o.engine.SecretName, "engine-secret", "parley-engine-tls", "Secret holding the engine's CA and serving certificate (made and renewed by the operator)")
	f.StringVar(&o.engine.SecretNamespace, "engine-namespace", os.Getenv("POD_NAMESPACE"), "namespace of --engine-secret (default: $POD_NAMESPACE)")
	f.StringSliceVar(&o.engine.DNSNames, "engine-dns-names", nil, "extra names in the engine's serving certificate (the host of --engine-address is always in it)")
	f.Float64Var(&o.engine.ActivityQPS, "activity-qps", 20, "Activity objects written per second at most, for all connectors together")
	f.IntVar(&o.engine.ActivityBurst, "activity-burst", 50, "burst of Activity writes above --activity-qps")
	f.IntVar(&o.engine.ActivityQueue, "activity-queue", 10000, "activities waiting to be written before new ones are dropped (and counted)")
	goflags := flag.NewFlagSet("zap", flag.ContinueOnError)
	o.zap.BindFlags(goflags)
	f.AddGoFlagSet(goflags)
	// controller-runtime registers --kubeconfig on the standard flag set, which cobra does
	// not parse; without it, KUBECONFIG or the in-cluster config is used.
	if kc := flag.CommandLine.Lookup("kubeconfig"); kc != nil {
		f.AddGoFlag(kc)
	}
	return cmd
}

func runOperator(cmd *cobra.Command, o operatorOptions) error {
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.zap)))
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
		Metrics:                 metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:  o.probeAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "parley-operator.parley.io",
		LeaderElectionNamespace: o.leaderElectionNamespace,
		Cache:                   controllers.CacheOptions(),
	}
	if o.namespaces != "" {
		opts.Cache.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range strings.Split(o.namespaces, ",") {
			opts.Cache.DefaultNamespaces[strings.TrimSpace(ns)] = cache.Config{}
		}
	}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return fmt.Errorf("create the manager: %w", err)
	}
	if o.engine.BindAddress != "0" {
		o.engine.Address = o.EngineAddress
		e, err := engine.Setup(cmd.Context(), mgr, o.engine)
		if err != nil {
			return err
		}
		o.EngineAddress, o.Ender, o.EngineCA = e.Address(), e, e.CA
		// The engine Service sends connector pods to ready replicas only.
		if err := mgr.AddReadyzCheck("engine", e.ReadyCheck); err != nil {
			return err
		}
	}
	if err := controllers.Setup(mgr, o.Defaults); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(cmd.Context())
}
