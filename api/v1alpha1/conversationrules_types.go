package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ConversationRules say how a connector talks: what it sends on connect, how it matches each
// message, what it replies, what it remembers, and when it closes.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=crules,categories=parley
// +kubebuilder:printcolumn:name="Group",type=string,JSONPath=`.spec.group`
// +kubebuilder:printcolumn:name="Valid",type=string,JSONPath=`.status.conditions[?(@.type=="Valid")].status`
// +kubebuilder:printcolumn:name="Rules",type=integer,JSONPath=`.status.ruleCount`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ConversationRules struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ConversationRulesSpec   `json:"spec"`
	Status ConversationRulesStatus `json:"status,omitempty"`
}

// ConversationRulesSpec is the whole conversation: operation settings, memory and rules.
type ConversationRulesSpec struct {
	// Description is free text reported with activities (Lope `name`).
	// +optional
	Description string `json:"description,omitempty"`

	// Group lets an ExternalConnector select these rules by group instead of by name.
	// +optional
	Group string `json:"group,omitempty"`

	// Enabled rules can be used by connectors. Defaults to true.
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// Operation holds the network and execution settings.
	Operation Operation `json:"operation"`

	// Memory declares the variables rules can read, capture into and update.
	// +optional
	Memory Memory `json:"memory,omitempty"`

	// Conversation holds the basic rules and the custom rules.
	// +optional
	Conversation Conversation `json:"conversation,omitempty"`
}

// Mode says whether a connector waits for peers or dials them.
// +kubebuilder:validation:Enum=Server;Client
type Mode string

const (
	ModeServer Mode = "Server"
	ModeClient Mode = "Client"
)

// Transport is the network protocol under the conversation.
// +kubebuilder:validation:Enum=TCP;UDP
type Transport string

const (
	TransportTCP Transport = "TCP"
	TransportUDP Transport = "UDP"
)

// Encoding turns bytes on the wire into the text rules match, and replies back into bytes.
// +kubebuilder:validation:Enum=utf-8;utf-16;utf-32;ascii;binary
type Encoding string

const (
	EncodingUTF8   Encoding = "utf-8"
	EncodingUTF16  Encoding = "utf-16"
	EncodingUTF32  Encoding = "utf-32"
	EncodingASCII  Encoding = "ascii"
	EncodingBinary Encoding = "binary"
)

// IdentifyBy is what keys a logical connection.
// +kubebuilder:validation:Enum=Address;IP
type IdentifyBy string

const (
	// IdentifyByAddress: the peer's IP and port, one conversation per socket.
	IdentifyByAddress IdentifyBy = "Address"
	// IdentifyByIP: the peer's IP alone; sockets from one IP join one conversation.
	IdentifyByIP IdentifyBy = "IP"
)

// CapacityPolicy says what a UDP server does with a new source at maxConcurrentConnections.
// +kubebuilder:validation:Enum=Refuse;EvictIdlest
type CapacityPolicy string

const (
	// CapacityRefuse refuses the new source (the default).
	CapacityRefuse CapacityPolicy = "Refuse"
	// CapacityEvictIdlest ends the conversation idle the longest and serves the new source.
	CapacityEvictIdlest CapacityPolicy = "EvictIdlest"
)

// MemoryUpdateWhen says whether a fired rule's updates and operation run before or after its
// response is sent.
// +kubebuilder:validation:Enum=Detected;Executed
type MemoryUpdateWhen string

const (
	MemoryUpdateDetected MemoryUpdateWhen = "Detected"
	MemoryUpdateExecuted MemoryUpdateWhen = "Executed"
)

// Operation holds the network and execution settings of a conversation.
type Operation struct {
	// Mode is Server (accept peers) or Client (dial ip:port). Defaults to Server.
	// +optional
	Mode Mode `json:"mode,omitempty"`

	// Transport is TCP or UDP. Defaults to TCP.
	// +optional
	Transport Transport `json:"transport,omitempty"`

	// IP is the bind address in server mode ("" = all addresses) and the target host in
	// client mode.
	// +optional
	IP string `json:"ip,omitempty"`

	// Port to listen on (server) or dial (client).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`

	// IPv6 uses IPv6 sockets instead of IPv4.
	// +optional
	IPv6 bool `json:"ipv6,omitempty"`

	// Encoding of the conversation. binary maps byte n to character U+00nn and back, so
	// `\xNN` in a regex matches any byte. Defaults to utf-8.
	// +optional
	Encoding Encoding `json:"encoding,omitempty"`

	// IdentifyBy says what makes one logical connection: Address (the peer's IP and port:
	// one conversation per socket, as every server behaves; the default) or IP (every socket
	// from one IP joins the live conversation: Lope's model, which keeps state across
	// reconnects).
	// +optional
	IdentifyBy IdentifyBy `json:"identifyBy,omitempty"`

	// InteractionTimeout ends a conversation idle for this long (timeout then ending are
	// sent). 0 means no timeout.
	// +optional
	InteractionTimeout *metav1.Duration `json:"interactionTimeout,omitempty"`

	// ConnectionQueue is the listen backlog. Defaults to the system's maximum
	// (net.core.somaxconn), so a burst of connections is not dropped; Lope's default was 5.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	ConnectionQueue *int32 `json:"connectionQueue,omitempty"`

	// MaxInputSize is the most bytes one read (or datagram) may carry; one read is one input.
	// Defaults to 1024.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1048576
	// +optional
	MaxInputSize *int32 `json:"maxInputSize,omitempty"`

	// MaxConcurrentConnections caps live logical connections (server; beyond it a peer is
	// refused) or sets how many conversations to open (client). Defaults to 5.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	MaxConcurrentConnections *int32 `json:"maxConcurrentConnections,omitempty"`

	// MaxConnectionsPerPeer caps, in server mode, the live sockets (TLS and DTLS handshakes
	// included) and logical connections of one source: an IPv4 address, or an IPv6 prefix of
	// peerPrefixV6 bits. Beyond it the peer is refused (Rejected) before any handshake, so one
	// source cannot take every slot of maxConcurrentConnections. Unset: no cap of its own
	// (peers behind one NAT share an address); docs/hardening.md recommends one on the
	// internet.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	MaxConnectionsPerPeer *int32 `json:"maxConnectionsPerPeer,omitempty"`

	// PeerPrefixV6 is how many leading bits of an IPv6 address make one source for
	// maxConnectionsPerPeer and the UDP per-peer limits: a host is usually given a whole /64.
	// Defaults to 64.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=128
	// +optional
	PeerPrefixV6 *int32 `json:"peerPrefixV6,omitempty"`

	// MaxConversationAge ends a conversation this long after it started, however active
	// (timeout then ending are sent, recorded as TimedOut), so that a peer trickling bytes
	// to keep interactionTimeout from expiring cannot hold a slot forever. 0 means no limit.
	// +optional
	MaxConversationAge *metav1.Duration `json:"maxConversationAge,omitempty"`

	// CapacityPolicy says what a UDP server does with a datagram from a new source when
	// maxConcurrentConnections conversations are live. Refuse (the default) refuses it, as
	// every server does with a peer over the cap (docs/design.md §4). EvictIdlest ends the
	// conversation idle the longest (the least recent input), as its interactionTimeout
	// would (timeout then ending, TimedOut), and serves the new source, as connection
	// tracking tables do: a UDP source address proves nothing, so spoofed sources can take
	// every slot until their interactionTimeout, and under Refuse a real client is refused
	// meanwhile. The cost: under a flood of new sources, a real conversation idle for longer
	// than the flood takes to bring maxConcurrentConnections new ones is ended too, and each
	// conversation evicted costs its activities (Connected, TimedOut). maxConnectionsPerPeer still
	// applies first. UDP servers without DTLS only (DTLS proves a source by its cookie).
	// +optional
	CapacityPolicy CapacityPolicy `json:"capacityPolicy,omitempty"`

	// ExecutionDelay waits this long before serving or dialing.
	// +optional
	ExecutionDelay *metav1.Duration `json:"executionDelay,omitempty"`

	// OnlyFirstHit stops at the first rule that fires (smallest id, ungrouped first).
	// +optional
	OnlyFirstHit bool `json:"onlyFirstHit,omitempty"`

	// TLS turns on TLS (TCP) or DTLS (UDP).
	// +optional
	TLS TLS `json:"tls,omitempty"`

	// Socket controls when sockets close while the logical connection lives on.
	// +optional
	Socket Socket `json:"socket,omitempty"`

	// Session identifies logical connections by a session id carried in the payload
	// (`key`, separator, value) instead of by the peer's address.
	// +optional
	Session *Session `json:"session,omitempty"`

	// Framing says how a TCP byte stream is cut into inputs. Unset is Read: one read of at
	// most maxInputSize bytes is one input, as in Lope. TCP only.
	// +optional
	Framing *Framing `json:"framing,omitempty"`

	// Transform rewrites every input before the rules see it and every reply before it is
	// sent, with CEL expressions (Lope's pre- and post-processor functions).
	// +optional
	Transform *Transform `json:"transform,omitempty"`

	// StartWhen makes a client wait until shared memory says go before it dials (Lope's
	// conditional_execution). Client mode only.
	// +optional
	StartWhen *StartWhen `json:"startWhen,omitempty"`

	// MemoryUpdateWhen runs a fired rule's updates and operation when it is Detected (before
	// its response) or Executed (after). Defaults to Executed.
	// +optional
	MemoryUpdateWhen MemoryUpdateWhen `json:"memoryUpdateWhen,omitempty"`

	// ReportMemory attaches the variables marked `report` to every activity.
	// +optional
	ReportMemory bool `json:"reportMemory,omitempty"`

	// AlertAll flags every activity as an alert.
	// +optional
	AlertAll bool `json:"alertAll,omitempty"`
}

// FramingType names how a byte stream is cut into inputs.
// +kubebuilder:validation:Enum=Read;Delimiter;Length;RESP;HTTP
type FramingType string

const (
	// FramingRead makes one read one input (Lope's model; the default).
	FramingRead FramingType = "Read"
	// FramingDelimiter ends an input with, and includes, a delimiter.
	FramingDelimiter FramingType = "Delimiter"
	// FramingLength reads each frame's size from a field of its header.
	FramingLength FramingType = "Length"
	// FramingRESP cuts Redis commands: inline commands and multi-bulk arrays.
	FramingRESP FramingType = "RESP"
	// FramingHTTP cuts HTTP/1.x requests: headers, then a Content-Length or chunked body.
	FramingHTTP FramingType = "HTTP"
)

// Framing says how a TCP byte stream is cut into inputs.
type Framing struct {
	// Type of framing. Defaults to Read.
	// +optional
	Type FramingType `json:"type,omitempty"`
	// Delimiter ends each input (Delimiter framing); the input includes it.
	// +optional
	Delimiter string `json:"delimiter,omitempty"`
	// DelimiterBase64 says Delimiter is base64-encoded bytes.
	// +optional
	DelimiterBase64 bool `json:"delimiterBase64,omitempty"`
	// Length describes the length field of Length framing.
	// +optional
	Length *LengthField `json:"length,omitempty"`
	// MaxFrameSize bounds one frame in bytes: a longer frame is an Error activity and closes
	// the socket, and is never buffered past this size. Defaults to 65536.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=16777216
	// +optional
	MaxFrameSize *int32 `json:"maxFrameSize,omitempty"`
}

// Endian is the byte order of a length field.
// +kubebuilder:validation:Enum=Big;Little
type Endian string

const (
	EndianBig    Endian = "Big"
	EndianLittle Endian = "Little"
)

// LengthFormat is how a length field is written, other than a fixed-size integer.
// +kubebuilder:validation:Enum=MQTT
type LengthFormat string

// LengthMQTT is MQTT's variable-length integer of 1 to 4 bytes.
const LengthMQTT LengthFormat = "MQTT"

// LengthField locates a frame's size in its header: frame size = field value + Adjust.
type LengthField struct {
	// Offset of the field from the start of the frame, in bytes.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Offset int32 `json:"offset,omitempty"`
	// Size of the field in bytes: 1, 2, 4 or 8. Defaults to 2. Ignored with Format.
	// +kubebuilder:validation:Enum=1;2;4;8
	// +optional
	Size int32 `json:"size,omitempty"`
	// Endian is the field's byte order. Defaults to Big.
	// +optional
	Endian Endian `json:"endian,omitempty"`
	// Format MQTT reads MQTT's 1-4 byte variable-length integer instead of a fixed-size one.
	// +optional
	Format LengthFormat `json:"format,omitempty"`
	// Adjust is added to the field's value to give the frame's whole size (for example +2
	// for DNS over TCP, whose field excludes itself).
	// +optional
	Adjust int32 `json:"adjust,omitempty"`
	// FillReplies writes each reply's own size into its length field before sending.
	// +optional
	FillReplies bool `json:"fillReplies,omitempty"`
}

// Transform rewrites inputs and replies with CEL expressions over the whole conversation.
type Transform struct {
	// Input is a CEL expression whose string (or bytes) result replaces each input before
	// the rules see it.
	// +optional
	Input string `json:"input,omitempty"`
	// Output is a CEL expression, with `output` bound to the reply, whose result replaces
	// each reply before it is sent.
	// +optional
	Output string `json:"output,omitempty"`
}

// StartWhen holds a client back until shared memory says go.
type StartWhen struct {
	// Conditions over shared variables that must all hold.
	// +optional
	Conditions []Condition `json:"conditions,omitempty"`
	// When is a CEL expression over shared variables that must hold as well.
	// +optional
	When string `json:"when,omitempty"`
	// IPFromVariable takes the target host from this shared variable.
	// +optional
	IPFromVariable string `json:"ipFromVariable,omitempty"`
	// PortFromVariable takes the target port from this shared variable.
	// +optional
	PortFromVariable string `json:"portFromVariable,omitempty"`
}

// TLS turns on encryption for the conversation; the certificates come from the connector.
type TLS struct {
	// Enabled turns on TLS on TCP and DTLS on UDP.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// ClientAuthentication requires peers to present a certificate signed by the client CA.
	// +optional
	ClientAuthentication bool `json:"clientAuthentication,omitempty"`
}

// Session describes a session id carried in the payload, such as a cookie or a token.
type Session struct {
	// Enabled turns session identification on.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// Key announces the id in the payload, e.g. "SESSIONID".
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`
	// Separator between the key and the value. Defaults to "=".
	// +optional
	Separator *string `json:"separator,omitempty"`
	// EndValue ends the value; empty means the value runs to the next whitespace or the end
	// of the input.
	// +optional
	EndValue string `json:"endValue,omitempty"`
	// Generate gives a new logical connection whose input carries no id a generated one,
	// available to rules as {{SESSION_VALUE}}.
	// +optional
	Generate *Generate `json:"generate,omitempty"`
	// UpdateWhen applies rules' sessionUpdate when the rule is Detected (before its reply)
	// or Executed (after). Defaults to operation.memoryUpdateWhen.
	// +optional
	UpdateWhen MemoryUpdateWhen `json:"updateWhen,omitempty"`
}

// SessionUpdate sets the session id of the logical connection from a rule: exactly one of
// Value, FromVariable or Generate.
type SessionUpdate struct {
	// Value is a fixed id.
	// +optional
	Value string `json:"value,omitempty"`
	// FromVariable takes the id from a variable.
	// +optional
	FromVariable string `json:"fromVariable,omitempty"`
	// Generate makes a new id as operation.session.generate says.
	// +optional
	Generate bool `json:"generate,omitempty"`
}

// Socket controls socket closes that keep the logical connection.
type Socket struct {
	// CloseAfterReplying closes the socket after each answer (and the async rules it
	// triggered), keeping the logical connection, as HTTP/1.0 does. It disables
	// rule-triggered closing.
	// +optional
	CloseAfterReplying bool `json:"closeAfterReplying,omitempty"`
	// RuleTriggeredClosing lets rules close (closeConnection) and reopen (reconnectBefore)
	// sockets. Defaults to true.
	// +optional
	RuleTriggeredClosing *bool `json:"ruleTriggeredClosing,omitempty"`
}

// SharedInit says how shared variables' defaults meet a store that already has values.
// +kubebuilder:validation:Enum=KeepExisting;Overwrite
type SharedInit string

const (
	// SharedInitKeepExisting writes defaults only where the store has no value.
	SharedInitKeepExisting SharedInit = "KeepExisting"
	// SharedInitOverwrite writes every default when the connector starts (Lope's
	// multi_ext_connector_memory_overwrite_during_init).
	SharedInitOverwrite SharedInit = "Overwrite"
)

// Memory declares variables by scope.
type Memory struct {
	// Space names the memory space whose shared variables this connector sees; every
	// connector of one space shares them. In the cluster a space never crosses a namespace.
	// Defaults to "default".
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.-]{1,63}$`
	// +optional
	Space string `json:"space,omitempty"`
	// SharedInit says how shared defaults meet existing values. Defaults to KeepExisting.
	// +optional
	SharedInit SharedInit `json:"sharedInit,omitempty"`
	// Shared variables are shared by every connector of the memory space (Lope's
	// multi_extconn_level), kept in the shared-memory store.
	// +optional
	Shared []Variable `json:"shared,omitempty"`
	// Global variables live as long as the connector and are shared by its conversations.
	// +optional
	Global []Variable `json:"global,omitempty"`
	// Connection variables start fresh for each logical connection.
	// +optional
	Connection []Variable `json:"connection,omitempty"`
}

// VariableType is the type values of a variable are parsed and compared as.
// +kubebuilder:validation:Enum=int;float;bool;string
type VariableType string

const (
	TypeInt    VariableType = "int"
	TypeFloat  VariableType = "float"
	TypeBool   VariableType = "bool"
	TypeString VariableType = "string"
)

// Variable is one named, typed memory slot.
type Variable struct {
	// Name used in templates, conditions, updates and operations. Case-sensitive.
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_.-]*$`
	Name string `json:"name"`
	// Type of the variable. Defaults to string.
	// +optional
	Type VariableType `json:"type,omitempty"`
	// Default value, written as a string and parsed by Type ("0", "1.5", "true").
	// Unset means 0, 0.0, false or "".
	// +optional
	Default string `json:"default,omitempty"`
	// Report includes the variable in activities when operation.reportMemory is on.
	// +optional
	Report bool `json:"report,omitempty"`
	// Generate gives the variable a random value instead of Default when its scope starts.
	// +optional
	Generate *Generate `json:"generate,omitempty"`
}

// Charset is the alphabet of a generated string.
// +kubebuilder:validation:Enum=Numeric;HexLower;HexUpper;HexMixed;AlphanumericLower;AlphanumericUpper;AlphanumericMixed;SymbolsLower;SymbolsUpper;SymbolsMixed
type Charset string

// Charsets for generated strings (Lope's characters_type).
const (
	CharsetNumeric           Charset = "Numeric"
	CharsetHexLower          Charset = "HexLower"
	CharsetHexUpper          Charset = "HexUpper"
	CharsetHexMixed          Charset = "HexMixed"
	CharsetAlphanumericLower Charset = "AlphanumericLower"
	CharsetAlphanumericUpper Charset = "AlphanumericUpper"
	CharsetAlphanumericMixed Charset = "AlphanumericMixed"
	CharsetSymbolsLower      Charset = "SymbolsLower"
	CharsetSymbolsUpper      Charset = "SymbolsUpper"
	CharsetSymbolsMixed      Charset = "SymbolsMixed"
)

// Generate describes a random value: a string of Length characters from Charset, a number
// between Min and Max (inclusive), or, for bool, a coin toss.
type Generate struct {
	// Length of a generated string. Defaults to 12.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4096
	// +optional
	Length *int32 `json:"length,omitempty"`
	// Charset of a generated string. Defaults to AlphanumericLower.
	// +optional
	Charset Charset `json:"charset,omitempty"`
	// Min of a generated number, parsed by the variable's type.
	// +optional
	Min string `json:"min,omitempty"`
	// Max of a generated number, parsed by the variable's type.
	// +optional
	Max string `json:"max,omitempty"`
}

// Conversation holds the basic rules, run at fixed moments, and the custom rules.
type Conversation struct {
	// Greetings is sent when a conversation starts (TCP server: on connect; UDP server:
	// before the first reply; client: on connect).
	// +optional
	Greetings *BasicRule `json:"greetings,omitempty"`
	// Default answers an input no custom rule fired on.
	// +optional
	Default *BasicRule `json:"default,omitempty"`
	// Empty answers an input that is empty once `\r` and `\n` are trimmed.
	// +optional
	Empty *BasicRule `json:"empty,omitempty"`
	// Timeout is sent when interactionTimeout ends a conversation (ending follows).
	// +optional
	Timeout *BasicRule `json:"timeout,omitempty"`
	// Ending is sent when a conversation ends by an ending rule, a timeout or an End order.
	// +optional
	Ending *BasicRule `json:"ending,omitempty"`
	// Rules are the ungrouped custom rules, tried in ascending id.
	// +optional
	Rules []Rule `json:"rules,omitempty"`
	// Groups of rules, tried in listed order after the ungrouped rules.
	// +optional
	Groups []RuleGroup `json:"groups,omitempty"`
}

// BasicRule is a reply sent at a fixed moment of the conversation.
type BasicRule struct {
	// Value to send; templates allowed. Empty means the rule runs and sends nothing.
	// +optional
	Value string `json:"value,omitempty"`
	// Base64 says Value is base64-encoded bytes.
	// +optional
	Base64 bool `json:"base64,omitempty"`
	// Enabled defaults to true when the rule is present.
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
	// Alert flags the activity of this rule as an alert.
	// +optional
	Alert bool `json:"alert,omitempty"`
}

// RuleMode says how a custom rule is run.
// +kubebuilder:validation:Enum=Sync;Async;Hybrid
type RuleMode string

const (
	// RuleSync rules fire on inputs their regex matches.
	RuleSync RuleMode = "Sync"
	// RuleAsync rules run only when scheduled (trigger, onStart, asyncSwitch, asyncLoop).
	RuleAsync RuleMode = "Async"
	// RuleHybrid rules do both.
	RuleHybrid RuleMode = "Hybrid"
)

// Rule is a custom conversation rule.
type Rule struct {
	// ID, unique across rules and groups; rules are tried in ascending id.
	// +kubebuilder:validation:Minimum=1
	ID int32 `json:"id"`
	// Mode is Sync, Async or Hybrid.
	Mode RuleMode `json:"mode"`
	// Regex (RE2 syntax) searched anywhere in the input; Sync and Hybrid rules.
	// +optional
	Regex string `json:"regex,omitempty"`
	// RegexBase64 says Regex is base64-encoded.
	// +optional
	RegexBase64 bool `json:"regexBase64,omitempty"`
	// Response to send; templates allowed. Empty means the rule runs and sends nothing.
	// +optional
	Response string `json:"response,omitempty"`
	// ResponseBase64 says Response is base64-encoded bytes.
	// +optional
	ResponseBase64 bool `json:"responseBase64,omitempty"`
	// Enabled defaults to true.
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
	// Captures store parts of the input in variables: group 1 if the regex has one, else the
	// whole match.
	// +optional
	Captures []Capture `json:"captures,omitempty"`
	// Conditions must all hold for the rule to fire (and, for async runs, to run).
	// +optional
	Conditions []Condition `json:"conditions,omitempty"`
	// When is a CEL expression that must hold as well as Conditions.
	// +optional
	When string `json:"when,omitempty"`
	// Updates set variables when the rule fires.
	// +optional
	Updates []Update `json:"updates,omitempty"`
	// Operation is one built-in operation run when the rule fires.
	// +optional
	Operation *MemoryOperation `json:"operation,omitempty"`
	// SessionUpdate sets the session id of the logical connection (operation.session).
	// +optional
	SessionUpdate *SessionUpdate `json:"sessionUpdate,omitempty"`
	// Trigger schedules async or hybrid rules after their delays.
	// +optional
	Trigger []Trigger `json:"trigger,omitempty"`
	// OnStart schedules this async or hybrid rule when a conversation starts.
	// +optional
	OnStart *OnStart `json:"onStart,omitempty"`
	// AsyncSwitch schedules the rules of the first option whose conditions hold, else Default.
	// +optional
	AsyncSwitch *AsyncSwitch `json:"asyncSwitch,omitempty"`
	// AsyncLoop repeats rules every delay while its conditions hold.
	// +optional
	AsyncLoop *AsyncLoop `json:"asyncLoop,omitempty"`
	// CloseConnection closes the socket after replying, keeping the logical connection.
	// +optional
	CloseConnection bool `json:"closeConnection,omitempty"`
	// ReconnectBefore reopens the socket before replying (client mode, TCP).
	// +optional
	ReconnectBefore bool `json:"reconnectBefore,omitempty"`
	// Ending sends the ending rule after replying and ends the conversation.
	// +optional
	Ending bool `json:"ending,omitempty"`
	// Alert flags the activity as an alert (a Warning Event in the cluster).
	// +optional
	Alert bool `json:"alert,omitempty"`
	// Framing switches the conversation's framing from the next input on (SMTP's DATA, or
	// protocols whose first message is shaped differently from the rest). TCP only.
	// +optional
	Framing *Framing `json:"framing,omitempty"`
	// Amplification says whether the UDP amplification guard bounds this rule's replies
	// (UDP servers without DTLS): Bounded (the default) sends at most 3 times the bytes the
	// peer sent over the last 10 seconds; Unbounded sends them whole and uncounted.
	// Dangerous: a source address can be spoofed, so an Unbounded rule lets anyone aim
	// its replies at a victim. Use it only for replies no larger than the request.
	// +optional
	Amplification Amplification `json:"amplification,omitempty"`
}

// Amplification says whether a rule's UDP replies are bounded by the amplification guard.
// +kubebuilder:validation:Enum=Bounded;Unbounded
type Amplification string

const (
	// AmplificationBounded: the rule's replies count against the guard (the default).
	AmplificationBounded Amplification = "Bounded"
	// AmplificationUnbounded: the rule's replies are sent whole, whatever the peer sent.
	AmplificationUnbounded Amplification = "Unbounded"
)

// Capture stores what a regex finds in the input into a variable.
type Capture struct {
	// Regex searched in the input: group 1 if present, else the whole match.
	Regex string `json:"regex"`
	// RegexBase64 says Regex is base64-encoded.
	// +optional
	RegexBase64 bool `json:"regexBase64,omitempty"`
	// Variable receiving the value (converted to its type).
	Variable string `json:"variable"`
}

// Condition holds when a variable equals a value or another variable.
type Condition struct {
	// Variable to compare.
	Variable string `json:"variable"`
	// Value, parsed by the variable's type.
	// +optional
	Value string `json:"value,omitempty"`
	// FromVariable compares with another variable instead of Value.
	// +optional
	FromVariable string `json:"fromVariable,omitempty"`
}

// Update sets a variable to a value or to another variable's value.
type Update struct {
	// Variable to set.
	Variable string `json:"variable"`
	// Value, parsed by the variable's type.
	// +optional
	Value string `json:"value,omitempty"`
	// FromVariable copies another variable (converted to this one's type) instead of Value.
	// +optional
	FromVariable string `json:"fromVariable,omitempty"`
	// Expr is a CEL expression whose result (converted to the variable's type) is the new
	// value, instead of Value or FromVariable.
	// +optional
	Expr string `json:"expr,omitempty"`
}

// MemoryOperation is a built-in operation over variables and literals.
type MemoryOperation struct {
	// Name of the operation, e.g. NBR_SUM, STR_CONCAT, LGC_AND.
	Name string `json:"name"`
	// Inputs are variable names, literals, or EXT_IN (the input), IP, PORT.
	// +optional
	Inputs []string `json:"inputs,omitempty"`
	// Outputs are the variables receiving the results.
	// +optional
	Outputs []string `json:"outputs,omitempty"`
}

// Trigger schedules an async or hybrid rule.
type Trigger struct {
	// RuleID of an Async or Hybrid rule.
	RuleID int32 `json:"ruleID"`
	// Delay before it runs.
	// +optional
	Delay *metav1.Duration `json:"delay,omitempty"`
}

// OnStart schedules a rule when a conversation starts.
type OnStart struct {
	// Delay after the start of the conversation.
	// +optional
	Delay *metav1.Duration `json:"delay,omitempty"`
}

// AsyncSwitch picks which rules to schedule from memory.
type AsyncSwitch struct {
	// Options are tried in order; the first whose conditions all hold is taken.
	// +optional
	Options []SwitchOption `json:"options,omitempty"`
	// Default is scheduled when no option holds.
	// +optional
	Default []Trigger `json:"default,omitempty"`
}

// SwitchOption is one branch of an AsyncSwitch.
type SwitchOption struct {
	// +optional
	Conditions []Condition `json:"conditions,omitempty"`
	// +optional
	Trigger []Trigger `json:"trigger,omitempty"`
}

// AsyncLoop repeats rules while conditions hold.
type AsyncLoop struct {
	// Conditions checked before each iteration.
	// +optional
	Conditions []Condition `json:"conditions,omitempty"`
	// Rules to repeat.
	Rules []LoopRule `json:"rules"`
}

// LoopRule is a rule an AsyncLoop runs every Delay.
type LoopRule struct {
	// RuleID of an Async or Hybrid rule.
	RuleID int32 `json:"ruleID"`
	// Delay between iterations.
	// +optional
	Delay *metav1.Duration `json:"delay,omitempty"`
	// MaxIterations bounds the loop; 0 means until the conditions fail or the conversation
	// ends.
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxIterations int32 `json:"maxIterations,omitempty"`
}

// RuleGroup is a set of rules that apply together.
type RuleGroup struct {
	// ID names the group.
	ID string `json:"id"`
	// Regex makes the group apply when found in the input.
	// +optional
	Regex string `json:"regex,omitempty"`
	// RegexBase64 says Regex is base64-encoded.
	// +optional
	RegexBase64 bool `json:"regexBase64,omitempty"`
	// Conditions make the group apply when they all hold (either this or Regex suffices; a
	// group with neither always applies).
	// +optional
	Conditions []Condition `json:"conditions,omitempty"`
	// Rules of the group, tried in ascending id.
	Rules []Rule `json:"rules"`
}

// ConversationRulesStatus reports what the rules controller found.
type ConversationRulesStatus struct {
	// Conditions: Valid, with every error and its field path.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// RuleCount is the number of custom rules.
	// +optional
	RuleCount int32 `json:"ruleCount,omitempty"`
	// Hash is the sha256 of the canonical spec.
	// +optional
	Hash string `json:"hash,omitempty"`
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// ConversationRulesList is a list of ConversationRules.
//
// +kubebuilder:object:root=true
type ConversationRulesList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ConversationRules `json:"items"`
}
