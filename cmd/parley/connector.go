package main

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/connector/pod"
	"github.com/parley-dev/parley/connector/uplink"
)

// newConnectorCommand is `parley connector`, the process of a connector pod (connector/pod):
// it binds the flags, with defaults from the environment the operator's pods set, and
// turns SIGTERM and SIGINT into a graceful end.
func newConnectorCommand() *cobra.Command {
	var o pod.Options
	zapOpts := zap.Options{Development: false}
	podName := os.Getenv(v1alpha1.EnvPodName)
	if podName == "" {
		podName, _ = os.Hostname()
	}
	cmd := &cobra.Command{
		Use:   "connector",
		Short: "Run a connector pod: take rules from the engine, hold the conversations, report every activity",
		Long: "Dial the engine, wait for the ExternalConnector's rules, then serve (or, in client mode, dial) " +
			"the conversations and stream every activity to the engine. Rules changes apply to new " +
			"connections at once; END, SIGTERM and SIGINT end live conversations gracefully (ending rule " +
			"sent), flush the activities and say Bye. The defaults come from the pod the operator makes.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Version = parleyVersion()
			o.Logger = zap.New(zap.UseFlagOptions(&zapOpts))
			return runConnector(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.EngineAddress, "engine-address", os.Getenv(v1alpha1.EnvEngineAddress), "host:port of the engine (env "+v1alpha1.EnvEngineAddress+")")
	f.StringVar(&o.EngineServerName, "engine-server-name", "", "name the engine's certificate must carry (default: the host of --engine-address)")
	f.StringVar(&o.Connector, "connector", os.Getenv(v1alpha1.EnvConnector), "ExternalConnector this pod serves (env "+v1alpha1.EnvConnector+")")
	f.StringVar(&o.Namespace, "namespace", os.Getenv(v1alpha1.EnvNamespace), "namespace of the ExternalConnector (env "+v1alpha1.EnvNamespace+")")
	f.StringVar(&o.Pod, "pod", podName, "pod name reported to the engine (env "+v1alpha1.EnvPodName+", else the hostname)")
	f.StringVar(&o.TokenFile, "engine-token-file", filepath.Join(v1alpha1.EngineMountPath, v1alpha1.TokenKey), "file holding the engine token, read at every dial")
	f.StringVar(&o.EngineCAFile, "engine-ca-file", filepath.Join(v1alpha1.EngineMountPath, v1alpha1.EngineCAKey), "PEM CA the engine's certificate must chain to, read at every dial")
	f.StringVar(&o.TLSDir, "tls-dir", v1alpha1.TLSMountPath, "directory of the connector's TLS Secret ("+pod.TLSCertFile+", "+pod.TLSKeyFile+", optional "+pod.CAFile+"), for rules with operation.tls.enabled")
	f.StringVar(&o.TLSClientCADir, "tls-client-ca-dir", v1alpha1.TLSCAMountPath, "directory of the client CA Secret ("+pod.CAFile+"), for operation.tls.clientAuthentication")
	f.DurationVar(&o.ConfigTimeout, "config-timeout", pod.DefaultConfigTimeout, "exit non-zero if no usable Config arrives within this time")
	f.BoolVar(&o.HoldAfterEnd, "hold-after-end", true, "in server mode, stay (not serving, not ready) after the engine's End order until the pod is deleted, rather than exit and be restarted")
	f.DurationVar(&o.EndTimeout, "end-timeout", pod.DefaultEndTimeout, "bound of a graceful end: conversations' endings, activity flush and Bye; conversations still live then are cut")
	f.StringVar(&o.MetricsAddress, "metrics-bind-address", ":"+strconv.Itoa(v1alpha1.MetricsPort), "address of the Prometheus metrics endpoint and of /readyz (0 disables them)")
	f.IntVar(&o.ActivityBuffer, "activity-buffer", activity.DefaultCapacity, "activities waiting for the engine client before new ones are dropped (and counted)")
	f.IntVar(&o.ReplayBuffer, "replay-buffer", uplink.DefaultReplayCapacity, "activities kept until the engine acknowledges them (replayed after a reconnection)")
	f.Int64Var(&o.ActivityBudget, "activity-budget", activity.DefaultBudget, "bytes of activities waiting for the engine client before new ones are dropped (and counted)")
	f.Int64Var(&o.ReplayBudget, "replay-budget", uplink.DefaultReplayBytes, "bytes of encoded activities kept until the engine acknowledges them")
	f.StringVar(&o.SharedMemoryDir, "shared-memory-dir", v1alpha1.EngineMountPath, "directory of the engine Secret, whose "+v1alpha1.SharedMemoryURLKey+" (with "+v1alpha1.SharedMemoryPasswordKey+" and "+v1alpha1.SharedMemoryCAKey+") names the Redis or Valkey store of shared variables; without it they stay in the pod")
	f.DurationVar(&o.SharedMemoryCheck, "shared-memory-check", pod.DefaultSharedMemoryCheck, "how often the shared-memory store is checked, for the engine's SharedMemoryReady condition")
	f.DurationVar(&o.SharedStepTimeout, "shared-memory-timeout", connector.DefaultSharedStepTimeout, "bound of each step over shared variables; a slower store makes it an Error activity")
	goflags := flag.NewFlagSet("zap", flag.ContinueOnError)
	zapOpts.BindFlags(goflags)
	f.AddGoFlagSet(goflags)
	return cmd
}

// runConnector runs the pod process until it ends or a signal comes: the first SIGTERM or
// SIGINT ends it gracefully, a second one kills it (the default action is back by then).
func runConnector(parent context.Context, o pod.Options) error {
	ctx, stop := untilSignalled(parent, func() {
		o.Logger.Info("signalled to stop: ending conversations (signal again to quit at once)")
	})
	defer stop()
	return pod.Run(ctx, o)
}
