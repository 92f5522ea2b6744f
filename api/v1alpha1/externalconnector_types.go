package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ExternalConnector says where to talk: which rules, on which port, with how many replicas,
// behind which Service, with which TLS material. The operator runs it as a Deployment
// (server mode) or a Job (client mode) of `parley connector` pods.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=xconn,categories=parley
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.status.mode`
// +kubebuilder:printcolumn:name="Transport",type=string,JSONPath=`.status.transport`
// +kubebuilder:printcolumn:name="Port",type=integer,JSONPath=`.status.port`
// +kubebuilder:printcolumn:name="Rules",type=string,JSONPath=`.status.rules.name`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.ready`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Active",type=integer,JSONPath=`.status.connections.active`
// +kubebuilder:printcolumn:name="Activities",type=integer,JSONPath=`.status.activities.total`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ExternalConnector struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ExternalConnectorSpec   `json:"spec"`
	Status ExternalConnectorStatus `json:"status,omitempty"`
}

// ExternalConnectorSpec selects rules and says how to run them.
//
// +kubebuilder:validation:XValidation:rule="has(self.rules) != has(self.group)",message="set exactly one of rules (a ConversationRules name) or group"
type ExternalConnectorSpec struct {
	// Rules names the ConversationRules, in this namespace, to run.
	// +optional
	Rules string `json:"rules,omitempty"`
	// Group selects the one enabled ConversationRules of this namespace with spec.group
	// equal to it.
	// +optional
	Group string `json:"group,omitempty"`
	// Port overrides operation.port.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port *int32 `json:"port,omitempty"`
	// IP overrides operation.ip: the bind address in server mode, the target in client mode.
	// +optional
	IP string `json:"ip,omitempty"`
	// Replicas of a server-mode connector. Defaults to 1.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// Paused connectors refuse new connections and keep their pods and live conversations.
	// +optional
	Paused bool `json:"paused,omitempty"`
	// Service exposes a server-mode connector.
	// +optional
	Service ConnectorService `json:"service,omitempty"`
	// TLS names the Secrets holding the key material for rules with operation.tls.
	// +optional
	TLS *ConnectorTLS `json:"tls,omitempty"`
	// Activities says which activities become Activity objects and how long they are kept.
	// +optional
	Activities ActivityPolicy `json:"activities,omitempty"`
	// Pod options for the connector pods.
	// +optional
	Pod ConnectorPod `json:"pod,omitempty"`
	// GracePeriod bounds a graceful end: live conversations get their ending rule and the
	// last activities are flushed. Defaults to 30s.
	// +optional
	GracePeriod *metav1.Duration `json:"gracePeriod,omitempty"`
}

// ConnectorService shapes the Service of a server-mode connector.
type ConnectorService struct {
	// Type of the Service. Defaults to ClusterIP.
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	// +optional
	Type corev1.ServiceType `json:"type,omitempty"`
	// ExternalTrafficPolicy Local keeps the peer's source IP, which decoys need.
	// +kubebuilder:validation:Enum=Cluster;Local
	// +optional
	ExternalTrafficPolicy corev1.ServiceExternalTrafficPolicy `json:"externalTrafficPolicy,omitempty"`
	// Annotations of the Service (for cloud load balancers, say).
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ConnectorTLS names the Secrets behind operation.tls.
type ConnectorTLS struct {
	// SecretName is a kubernetes.io/tls Secret: the server certificate (server mode) or the
	// client certificate to present (client mode).
	// +optional
	SecretName string `json:"secretName,omitempty"`
	// ClientCASecretName holds ca.crt, the CA bundle peers' certificates must chain to
	// (server mode with clientAuthentication), or the server's (client mode).
	// +optional
	ClientCASecretName string `json:"clientCASecretName,omitempty"`
	// ServerName the server's certificate must carry (client mode).
	// +optional
	ServerName string `json:"serverName,omitempty"`
	// InsecureSkipVerify accepts any server certificate (client mode).
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// RecordPolicy says which activities become Activity objects.
// +kubebuilder:validation:Enum=All;Alerts;None
type RecordPolicy string

const (
	RecordAll    RecordPolicy = "All"
	RecordAlerts RecordPolicy = "Alerts"
	RecordNone   RecordPolicy = "None"
)

// ActivityPolicy says which activities are kept as objects, and for how long.
type ActivityPolicy struct {
	// Record All activities, only Alerts, or None as Activity objects; all are still
	// counted, logged and exported as metrics. Defaults to All.
	// +optional
	Record RecordPolicy `json:"record,omitempty"`
	// MaxCount keeps at most this many Activities of the connector, deleting the oldest.
	// Defaults to the operator's --activity-max-count (the chart's 1000).
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxCount *int32 `json:"maxCount,omitempty"`
	// TTL deletes Activities older than this; 0s keeps them however old. Defaults to the
	// operator's --activity-ttl (the chart's 168h).
	// +optional
	TTL *metav1.Duration `json:"ttl,omitempty"`
	// KeepOnDelete leaves the connector's Activities in place when it is deleted (they
	// carry no owner reference); they then expire after the operator's --activity-ttl.
	// +optional
	KeepOnDelete bool `json:"keepOnDelete,omitempty"`
	// RedactEvents masks captured values in the inputs that alert Events quote. Events are
	// readable by anyone with the built-in view role, and captures are where credentials a
	// peer tried end up. Defaults to true; the Activities keep everything.
	// +optional
	RedactEvents *bool `json:"redactEvents,omitempty"`
}

// Redacts says whether alert Events mask captured values (redactEvents, true by default).
func (p ActivityPolicy) Redacts() bool { return p.RedactEvents == nil || *p.RedactEvents }

// ConnectorPod holds pod options for connector pods.
type ConnectorPod struct {
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
	// HostNetwork runs the pods in the node's network namespace.
	// +optional
	HostNetwork bool `json:"hostNetwork,omitempty"`
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
}

// Overrides are what an ExternalConnector changes of the rules it runs; nil keeps the
// rules' own value. rules.Effective folds them into a spec, for every side alike.
type Overrides struct {
	// IP replaces operation.ip: the bind address in server mode, the target in client mode.
	IP *string
	// Port replaces operation.port.
	Port *int32
}

// Overrides are the connector's spec.ip and spec.port.
func (s *ExternalConnectorSpec) Overrides() Overrides {
	var o Overrides
	if s.IP != "" {
		ip := s.IP
		o.IP = &ip
	}
	if s.Port != nil {
		port := *s.Port
		o.Port = &port
	}
	return o
}

// Phase is where an ExternalConnector is in its life.
// +kubebuilder:validation:Enum=Pending;Running;Paused;Succeeded;Failed;Terminating
type Phase string

const (
	PhasePending     Phase = "Pending"
	PhaseRunning     Phase = "Running"
	PhasePaused      Phase = "Paused"
	PhaseSucceeded   Phase = "Succeeded"
	PhaseFailed      Phase = "Failed"
	PhaseTerminating Phase = "Terminating"
)

// ExternalConnectorStatus reports what the operator and the connector pods observe.
type ExternalConnectorStatus struct {
	// +optional
	Phase Phase `json:"phase,omitempty"`
	// Conditions: RulesResolved, Ready, EngineConnected.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Rules the connector runs.
	// +optional
	Rules *RulesRef `json:"rules,omitempty"`
	// Mode, Transport and Port of the resolved rules (with the spec's overrides).
	// +optional
	Mode Mode `json:"mode,omitempty"`
	// +optional
	Transport Transport `json:"transport,omitempty"`
	// +optional
	Port int32 `json:"port,omitempty"`
	// Endpoint where third parties reach a server-mode connector (the Service).
	// +optional
	Endpoint string `json:"endpoint,omitempty"`
	// +optional
	Replicas int32 `json:"replicas,omitempty"`
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
	// Ready is readyReplicas out of the replicas wanted ("1/1"), the READY column.
	// +optional
	Ready string `json:"ready,omitempty"`
	// Selector selects the connector's pods, in label-selector form: the scale subresource
	// hands it to `kubectl scale` and HorizontalPodAutoscalers.
	// +optional
	Selector string `json:"selector,omitempty"`
	// +optional
	Connections ConnectionCounts `json:"connections,omitempty"`
	// Datagrams counts the datagrams the connector's pods lost before any conversation read
	// them; omitted while none were (TCP connectors never have it).
	// +optional
	Datagrams *DatagramCounts `json:"datagrams,omitempty"`
	// +optional
	Activities ActivityCounts `json:"activities,omitempty"`
	// +optional
	LastActivityTime *metav1.Time `json:"lastActivityTime,omitempty"`
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// ConnectionCounts count logical connections.
type ConnectionCounts struct {
	Active   int64 `json:"active"`
	Total    int64 `json:"total"`
	Rejected int64 `json:"rejected"`
	// Evicted conversations were ended to make room for a new source at
	// maxConcurrentConnections (operation.capacityPolicy: EvictIdlest); each is also a
	// TimedOut activity.
	// +optional
	Evicted int64 `json:"evicted,omitempty"`
}

// DatagramCounts count the datagrams a UDP server's pods lost before any conversation read
// them: a flood's measure, beside the pods' metrics (docs/hardening.md §4).
type DatagramCounts struct {
	// RateLimited UDP datagrams were dropped by the per-peer rate limit (each source's
	// token bucket); summarised as Rejected activities.
	// +optional
	RateLimited int64 `json:"rateLimited,omitempty"`
	// Dropped datagrams were lost for lack of room: the kernel's full receive buffer of the
	// UDP or DTLS socket, and the DTLS listener's full backlog of new sources and per-source
	// buffers. Real clients' datagrams are among them.
	// +optional
	Dropped int64 `json:"dropped,omitempty"`
}

// ActivityCounts count activities: produced by the connectors, recorded as objects, and
// dropped by the write rate limit.
type ActivityCounts struct {
	Total    int64 `json:"total"`
	Recorded int64 `json:"recorded"`
	Dropped  int64 `json:"dropped"`
}

// ExternalConnectorList is a list of ExternalConnectors.
//
// +kubebuilder:object:root=true
type ExternalConnectorList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ExternalConnector `json:"items"`
}
