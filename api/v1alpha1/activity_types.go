package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ActivityType says what happened.
// +kubebuilder:validation:Enum=ConnectorStarted;Connected;Greeted;Input;Async;Rejected;TimedOut;Ended;Broken;Error;ConnectorStopped
type ActivityType string

// Activity types, in the order a conversation meets them.
const (
	ActivityConnectorStarted ActivityType = "ConnectorStarted"
	ActivityConnected        ActivityType = "Connected"
	ActivityGreeted          ActivityType = "Greeted"
	ActivityInput            ActivityType = "Input"
	ActivityAsync            ActivityType = "Async"
	ActivityRejected         ActivityType = "Rejected"
	ActivityTimedOut         ActivityType = "TimedOut"
	ActivityEnded            ActivityType = "Ended"
	ActivityBroken           ActivityType = "Broken"
	ActivityError            ActivityType = "Error"
	ActivityConnectorStopped ActivityType = "ConnectorStopped"
)

// Basic rule names as they appear in RulesRecord.Basic.
const (
	BasicGreetings = "greetings"
	BasicDefault   = "default"
	BasicEmpty     = "empty"
	BasicTimeout   = "timeout"
	BasicEnding    = "ending"
)

// Activity is one thing a third party did, or that a connector did with it: written once by
// the engine, never updated.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=act,categories=parley
// +kubebuilder:printcolumn:name="Connector",type=string,JSONPath=`.connector`
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.type`
// +kubebuilder:printcolumn:name="Alert",type=boolean,JSONPath=`.alert`
// +kubebuilder:printcolumn:name="Peer",type=string,JSONPath=`.connection.peer`
// +kubebuilder:printcolumn:name="Rules",type=string,JSONPath=`.rules.executed`
// +kubebuilder:printcolumn:name="Input",type=string,JSONPath=`.input.preview`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Activity struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	ActivityRecord `json:",inline"`
}

// ActivityRecord is the content of an Activity. The connector produces it and `parley run
// --output json` prints it with these field names.
type ActivityRecord struct {
	// Connector that recorded the activity.
	// +optional
	Connector string `json:"connector,omitempty"`
	// Time it happened.
	Time metav1.MicroTime `json:"time"`
	// Type of activity.
	Type ActivityType `json:"type"`
	// Connection the activity belongs to; empty for connector-level activities.
	// +optional
	Connection *ConnectionRef `json:"connection,omitempty"`
	// Input received, for Input activities.
	// +optional
	Input *InputRecord `json:"input,omitempty"`
	// Rules that ran.
	// +optional
	Rules *RulesRecord `json:"rules,omitempty"`
	// Output sent.
	// +optional
	Output *OutputRecord `json:"output,omitempty"`
	// Captures made by the rules.
	// +optional
	Captures []CaptureRecord `json:"captures,omitempty"`
	// Memory holds the reported variables after the activity, when reportMemory is on.
	// +optional
	Memory *MemorySnapshot `json:"memory,omitempty"`
	// RulesRef identifies the rules the conversation runs on.
	// +optional
	RulesRef *RulesRef `json:"rulesRef,omitempty"`
	// Alert is set when a rule marked alert ran (or alertAll is on).
	// +optional
	Alert bool `json:"alert,omitempty"`
	// Message explains errors, refusals and lifecycle events.
	// +optional
	Message string `json:"message,omitempty"`
	// Evidence links the activity into its chain: the hash chain of every activity one
	// connector process (or one `parley run`) recorded, so that a missing activity shows as a
	// gap and an altered one breaks the chain (docs/evidence.md).
	// +optional
	Evidence *EvidenceRecord `json:"evidence,omitempty"`
}

// EvidenceRecord is an activity's place in its hash chain.
type EvidenceRecord struct {
	// Chain identifies the chain: random, one per connector process or `parley run`.
	Chain string `json:"chain"`
	// Seq numbers the activities of the chain from 1, in the order they were recorded,
	// dropped ones included.
	Seq uint64 `json:"seq"`
	// PrevHash is the hash of the activity recorded just before this one ("" for seq 1).
	// +optional
	PrevHash string `json:"prevHash,omitempty"`
	// Hash is "sha256:" and the hex SHA-256 of the activity's canonical encoding (its JSON
	// with this hash empty and input.preview left out; docs/evidence.md).
	Hash string `json:"hash"`
}

// ConnectionRef identifies the logical connection.
type ConnectionRef struct {
	ID        string    `json:"id"`
	Peer      string    `json:"peer"`
	Transport Transport `json:"transport"`
	// Session is the session id of the logical connection (operation.session).
	// +optional
	Session string `json:"session,omitempty"`
}

// InputRecord is one input as received.
type InputRecord struct {
	// Text is the input decoded with the conversation's encoding.
	Text string `json:"text"`
	// Base64 is the raw bytes.
	Base64 string `json:"base64"`
	// Bytes is the number of raw bytes.
	Bytes int32 `json:"bytes"`
	// Truncated says the input filled maxInputSize (TCP) or was cut to it (UDP); on an
	// Activity object, also that the engine cut text and base64 to fit the object (bytes
	// keeps the count received).
	// +optional
	Truncated bool `json:"truncated,omitempty"`
	// Preview is the start of the text, escaped on one line: the INPUT column of
	// `kubectl get activities`. The engine writes it.
	// +optional
	Preview string `json:"preview,omitempty"`
}

// RulesRecord lists what ran.
type RulesRecord struct {
	// Executed custom rules, in the order they ran.
	// +optional
	Executed []int32 `json:"executed,omitempty"`
	// Async rules that ran.
	// +optional
	Async []int32 `json:"async,omitempty"`
	// Scheduled async rules.
	// +optional
	Scheduled []int32 `json:"scheduled,omitempty"`
	// Basic rule that ran: greetings, default, empty, timeout or ending.
	// +optional
	Basic string `json:"basic,omitempty"`
}

// OutputRecord is what was sent: the bytes actually written (after the UDP amplification
// guard, and only as far as a failed write got), and of those, up to the conversation's
// maxInputSize (the bound its inputs have), the text and the raw bytes.
type OutputRecord struct {
	// Bytes is the number of bytes written.
	Bytes int32 `json:"bytes"`
	// Text is what was written, decoded with the conversation's encoding as inputs are.
	// +optional
	Text string `json:"text,omitempty"`
	// Base64 is the raw bytes written.
	// +optional
	Base64 string `json:"base64,omitempty"`
	// Truncated says that text and base64 hold only the first bytes of what was written:
	// maxInputSize of them, or fewer on an Activity object (see docs/rules.md §10).
	// +optional
	Truncated bool `json:"truncated,omitempty"`
}

// CaptureRecord is a value a rule captured from the input.
type CaptureRecord struct {
	Rule     int32  `json:"rule"`
	Variable string `json:"variable"`
	Value    string `json:"value"`
}

// MemorySnapshot is a snapshot of reported variables.
type MemorySnapshot struct {
	// +optional
	Connection map[string]string `json:"connection,omitempty"`
	// +optional
	Global map[string]string `json:"global,omitempty"`
}

// RulesRef identifies a version of ConversationRules.
type RulesRef struct {
	Name       string `json:"name"`
	Generation int64  `json:"generation,omitempty"`
	Hash       string `json:"hash"`
}

// ActivityList is a list of Activities.
//
// +kubebuilder:object:root=true
type ActivityList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Activity `json:"items"`
}
