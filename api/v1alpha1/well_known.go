package v1alpha1

import "time"

// Labels and annotations Parley puts on the objects it makes.
const (
	// LabelConnector names the ExternalConnector an object (pod, Service, Activity) belongs to.
	LabelConnector = "parley.io/connector"
	// LabelConnection names the logical connection an Activity belongs to.
	LabelConnection = "parley.io/connection"
	// LabelType is an Activity's type.
	LabelType = "parley.io/type"
	// LabelAlert is "true" on an Activity flagged as an alert, "false" otherwise, so that
	// `kubectl get activities -l parley.io/alert=true` lists the alerts.
	LabelAlert = "parley.io/alert"

	// AnnotationTemplateHash records the Job spec a client-mode Job was made from; Jobs are
	// immutable, so a different desired spec means a new Job.
	AnnotationTemplateHash = "parley.io/template-hash"
	// AnnotationConnectorGeneration records the connector generation a Job was made for.
	AnnotationConnectorGeneration = "parley.io/connector-generation"
)

// The connector pod contract: what the operator puts in a connector pod and `parley
// connector` reads from it. Both sides use these names; changing one is an API change.
const (
	ContainerName = "connector"
	PortName      = "conversation"
	// MetricsPortName names the port of the connector's /metrics, /healthz and /readyz
	// (MetricsPort, `parley connector --metrics-bind-address`).
	MetricsPortName = "metrics"
	MetricsPort     = 9090
	// ReadinessPath answers 200 once the connector serves and is connected to the engine.
	ReadinessPath   = "/readyz"
	EngineMountPath = "/var/run/parley/engine"
	TLSMountPath    = "/var/run/parley/tls"
	TLSCAMountPath  = "/var/run/parley/tls-ca"
	TokenKey        = "token"
	EngineCAKey     = "ca.crt"
	// SharedMemoryURLKey, SharedMemoryPasswordKey and SharedMemoryCAKey hold, in the
	// connector's engine Secret, the Redis or Valkey store of shared variables
	// (memory.shared): its URL (without a password), the password, and the PEM CA of a
	// rediss:// server. Absent when the operator has no store: each pod keeps its own.
	SharedMemoryURLKey      = "shared-memory-url"
	SharedMemoryPasswordKey = "shared-memory-password"
	SharedMemoryCAKey       = "shared-memory-ca.crt"
	EnvConnector            = "PARLEY_CONNECTOR"
	EnvNamespace            = "PARLEY_NAMESPACE"
	EnvEngineAddress        = "PARLEY_ENGINE_ADDRESS"
	EnvPodName              = "PARLEY_POD_NAME"

	// UnprivilegedSysctl lets a non-root connector bind a port below 1024.
	UnprivilegedSysctl = "net.ipv4.ip_unprivileged_port_start"
	// NonRootID is the uid and gid connector pods run as (the distroless "nonroot" user).
	NonRootID = 65532
)

// DefaultGracePeriod bounds a graceful end when spec.gracePeriod is not set.
const DefaultGracePeriod = 30 * time.Second

// EngineSecretName is the Secret holding a connector's engine token and the engine CA.
func EngineSecretName(connector string) string { return connector + "-engine" }

// ConnectorLabels select the pods of one connector; every object made for it carries them.
func ConnectorLabels(connector string) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":      "parley",
		"app.kubernetes.io/component": "connector",
		LabelConnector:                connector,
	}
}
