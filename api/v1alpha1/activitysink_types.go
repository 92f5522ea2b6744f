package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ActivitySink sends the activities of this namespace's connectors out of the cluster: to a
// webhook (JSON or Slack), a syslog server (RFC 5424 or CEF), Kafka, or by email. Each sink
// has its own bounded queue and never slows the connectors, the Activity writer or another
// sink; what it drops is counted in its status (docs/sinks.md).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=parley
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.status.type`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Delivered",type=integer,JSONPath=`.status.delivered`
// +kubebuilder:printcolumn:name="Dropped",type=integer,JSONPath=`.status.dropped`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ActivitySink struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ActivitySinkSpec   `json:"spec"`
	Status ActivitySinkStatus `json:"status,omitempty"`
}

// ActivitySinkSpec says which activities go where.
//
// +kubebuilder:validation:XValidation:rule="[has(self.webhook), has(self.syslog), has(self.kafka), has(self.email)].filter(x, x).size() == 1",message="set exactly one of webhook, syslog, kafka or email"
type ActivitySinkSpec struct {
	// ConnectorSelector picks the ExternalConnectors of this namespace whose activities the
	// sink receives, by their labels; empty picks all.
	// +optional
	ConnectorSelector *metav1.LabelSelector `json:"connectorSelector,omitempty"`
	// Filter keeps only some activities.
	// +optional
	Filter SinkFilter `json:"filter,omitempty"`
	// Webhook posts batches of activities over HTTP(S).
	// +optional
	Webhook *WebhookSink `json:"webhook,omitempty"`
	// Syslog sends each activity as a syslog message.
	// +optional
	Syslog *SyslogSink `json:"syslog,omitempty"`
	// Kafka produces each activity as a record of a topic.
	// +optional
	Kafka *KafkaSink `json:"kafka,omitempty"`
	// Email sends alerts as digests.
	// +optional
	Email *EmailSink `json:"email,omitempty"`
}

// SinkFilter keeps the activities a sink receives.
type SinkFilter struct {
	// AlertsOnly keeps only activities with alert set.
	// +optional
	AlertsOnly bool `json:"alertsOnly,omitempty"`
	// Types keeps only activities of these types; empty keeps all.
	// +optional
	Types []ActivityType `json:"types,omitempty"`
}

// SecretKeyRef names a Secret of the sink's namespace, and for a single value, its key.
type SecretKeyRef struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Key of the value in the Secret; each destination documents its default.
	// +optional
	Key string `json:"key,omitempty"`
}

// WebhookFormat is how a webhook's body is written.
// +kubebuilder:validation:Enum=JSON;Slack
type WebhookFormat string

// Webhook formats.
const (
	WebhookJSON  WebhookFormat = "JSON"
	WebhookSlack WebhookFormat = "Slack"
)

// WebhookSink posts activities to a URL.
type WebhookSink struct {
	// URL to POST to: http or https.
	// +kubebuilder:validation:MinLength=1
	URL string `json:"url"`
	// Format: JSON (default; a batch {"activities": [...]}, signed when secretRef is set) or
	// Slack (alerts as readable messages of an incoming webhook).
	// +optional
	Format WebhookFormat `json:"format,omitempty"`
	// SecretRef names the HMAC-SHA256 key that signs each body (default key: hmacKey); the
	// signature goes in the header X-Parley-Signature as sha256=<hex>.
	// +optional
	SecretRef *SecretKeyRef `json:"secretRef,omitempty"`
	// TLS verifies an https server.
	// +optional
	TLS *SinkTLS `json:"tls,omitempty"`
}

// SyslogFormat is how a syslog message is written.
// +kubebuilder:validation:Enum=RFC5424;CEF
type SyslogFormat string

// Syslog formats.
const (
	SyslogRFC5424 SyslogFormat = "RFC5424"
	SyslogCEF     SyslogFormat = "CEF"
)

// SyslogSink sends activities to a syslog server.
type SyslogSink struct {
	// Address is udp://host:port, tcp://host:port (octet-counted framing, RFC 6587) or
	// tls://host:port (RFC 5425).
	// +kubebuilder:validation:MinLength=1
	Address string `json:"address"`
	// Format: RFC5424 (default; the activity's JSON as the message) or CEF (ArcSight's
	// Common Event Format, in an RFC 5424 message).
	// +optional
	Format SyslogFormat `json:"format,omitempty"`
	// Facility: kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv,
	// ftp, local0 to local7 (default local0).
	// +optional
	Facility string `json:"facility,omitempty"`
	// TLS verifies a tls:// server.
	// +optional
	TLS *SinkTLS `json:"tls,omitempty"`
}

// KafkaSink produces activities to a Kafka topic, keyed by connector.
type KafkaSink struct {
	// Brokers to bootstrap from, host:port.
	// +kubebuilder:validation:MinItems=1
	Brokers []string `json:"brokers"`
	// Topic to produce to.
	// +kubebuilder:validation:MinLength=1
	Topic string `json:"topic"`
	// TLS connects to the brokers over TLS when set ({} trusts the system's CAs).
	// +optional
	TLS *SinkTLS `json:"tls,omitempty"`
	// SASL authenticates to the brokers.
	// +optional
	SASL *KafkaSASL `json:"sasl,omitempty"`
}

// KafkaSASL is a SASL mechanism and its credentials.
type KafkaSASL struct {
	// Mechanism: PLAIN (default), SCRAM-SHA-256 or SCRAM-SHA-512.
	// +kubebuilder:validation:Enum=PLAIN;SCRAM-SHA-256;SCRAM-SHA-512
	// +optional
	Mechanism string `json:"mechanism,omitempty"`
	// SecretRef names the Secret holding the keys username and password.
	SecretRef SecretKeyRef `json:"secretRef"`
}

// EmailSink mails alerts in digests.
type EmailSink struct {
	// SMTP is the server, host:port; STARTTLS is required.
	// +kubebuilder:validation:MinLength=1
	SMTP string `json:"smtp"`
	// From is the sender address.
	// +kubebuilder:validation:MinLength=1
	From string `json:"from"`
	// To are the recipients.
	// +kubebuilder:validation:MinItems=1
	To []string `json:"to"`
	// SecretRef names the Secret holding the keys username and password for SMTP AUTH.
	// +optional
	SecretRef *SecretKeyRef `json:"secretRef,omitempty"`
	// Interval gathers activities into one digest (default 5m).
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`
	// MaxPerHour caps the digests sent per hour (default 12); what waits goes into the next.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxPerHour int32 `json:"maxPerHour,omitempty"`
	// TLS verifies the server's STARTTLS certificate.
	// +optional
	TLS *SinkTLS `json:"tls,omitempty"`
}

// SinkTLS says how a sink verifies its server.
type SinkTLS struct {
	// CASecretRef names a Secret with the PEM CA bundle (default key: ca.crt); the system's
	// CAs when unset.
	// +optional
	CASecretRef *SecretKeyRef `json:"caSecretRef,omitempty"`
	// ServerName the certificate must carry (default: the host of the address).
	// +optional
	ServerName string `json:"serverName,omitempty"`
	// InsecureSkipVerify accepts any certificate.
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// ActivitySinkStatus is written by the controller (type, Ready) and by the engine
// (counters, lastError), each under its own field manager.
type ActivitySinkStatus struct {
	// Type is the destination: Webhook, Syslog, Kafka or Email.
	// +optional
	Type string `json:"type,omitempty"`
	// Conditions: Ready.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Delivered counts the activities the destination accepted.
	// +optional
	Delivered int64 `json:"delivered,omitempty"`
	// Failed counts delivery attempts that failed (each is retried).
	// +optional
	Failed int64 `json:"failed,omitempty"`
	// Dropped counts the activities given up: the queue was full.
	// +optional
	Dropped int64 `json:"dropped,omitempty"`
	// LastError is the last delivery error.
	// +optional
	LastError string `json:"lastError,omitempty"`
	// ObservedGeneration is the generation the controller validated.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// ActivitySinkList is a list of ActivitySinks.
//
// +kubebuilder:object:root=true
type ActivitySinkList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ActivitySink `json:"items"`
}
