// Package rules compiles a ConversationRulesSpec into a Program the runtime executes, and
// validates it on the way: every problem is reported with its field path, so `parley check`,
// the rules controller and the runtime agree on what is valid.
package rules

import (
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules/codec"
	"github.com/parley-dev/parley/rules/ops"
	"github.com/parley-dev/parley/rules/value"
)

// Program is a compiled, immutable conversation. Live conversations keep the Program they
// started with, so a new one can replace it without touching them.
type Program struct {
	Ref v1alpha1.RulesRef

	Mode               v1alpha1.Mode
	Transport          v1alpha1.Transport
	IP                 string
	Port               int
	IPv6               bool
	Encoding           v1alpha1.Encoding
	Codec              codec.Codec
	IdentifyByAddress  bool
	InteractionTimeout time.Duration
	// ConnectionQueue is the listen backlog; 0 leaves the system's maximum.
	ConnectionQueue int
	MaxInputSize    int
	MaxConnections  int
	// MaxConnectionsPerPeer caps a source's sockets and conversations (0: no cap);
	// PeerPrefixV6 is the IPv6 prefix length that makes one source.
	MaxConnectionsPerPeer int
	PeerPrefixV6          int
	// MaxConversationAge ends a conversation this long after its start (0: never).
	MaxConversationAge time.Duration
	// EvictIdlest: a UDP server at MaxConnections ends the conversation idle the longest
	// for a new source instead of refusing it (operation.capacityPolicy: EvictIdlest).
	EvictIdlest        bool
	ExecutionDelay     time.Duration
	OnlyFirstHit       bool
	TLS                v1alpha1.TLS
	CloseAfterReplying bool
	// RuleClosing lets rules close and reopen sockets; off when closeAfterReplying is on.
	RuleClosing      bool
	UpdateOnDetected bool
	ReportMemory     bool
	AlertAll         bool
	// Session, when set, identifies logical connections by an id in the payload.
	Session *Session
	// Framing cuts a TCP stream into inputs; nil is Read (one read is one input).
	Framing *Framing
	// Reframes says some rule switches its socket's framing.
	Reframes bool

	Global     []*Variable
	Connection []*Variable
	// Shared variables live in the shared-memory store, under Space (docs/rules.md §3).
	Shared []*Variable
	Space  string
	// SharedOverwrite writes the shared defaults at connector start even where the store
	// has values (sharedInit: Overwrite); otherwise only where it has none.
	SharedOverwrite bool
	// StartWhen, in client mode, holds the dial back until shared memory says go.
	StartWhen *StartWhen

	// Expr is the environment of the conversation's CEL expressions; nil when it has none.
	Expr *ExprEnv
	// TransformInput rewrites each input before the rules see it, TransformOutput each reply
	// before it is sent (operation.transform); nil when absent.
	TransformInput, TransformOutput *Expr

	// Basic rules; nil when absent or disabled.
	Greetings, Default, Empty, Timeout, Ending *Basic

	// Ungrouped Sync and Hybrid rules in ascending id, then the groups in listed order.
	Rules  []*Rule
	Groups []*Group
	// Prefilter says which of the rules' and groups' regexes can match an input (slots in
	// the order above); nil when there are too few for it to pay.
	Prefilter *Prefilter
	// OnStart lists the rules scheduled when a conversation starts.
	OnStart []Schedule
	// RuleCount counts every custom rule, enabled or not.
	RuleCount int
}

// Scope is where a variable lives.
type Scope uint8

const (
	ScopeConnection Scope = iota
	ScopeGlobal
	// ScopeShared variables are shared by every connector of a memory space; the runtime
	// reads and writes them in atomic steps against its shared-memory store.
	ScopeShared
)

// VarRef locates a variable in its scope's slice of values.
type VarRef struct {
	Scope Scope
	Index int
	Kind  value.Kind
	Name  string
}

// Variable is a compiled declaration.
type Variable struct {
	Name     string
	Kind     value.Kind
	Default  value.Value
	Report   bool
	Generate *Generator
}

// Basic is a compiled basic rule.
type Basic struct {
	Name     string
	Template *Template
	Alert    bool
}

// Rule is a compiled custom rule.
type Rule struct {
	ID         int32
	Mode       v1alpha1.RuleMode
	Regex      *Regexp
	Response   *Template // nil: runs without sending
	Captures   []Capture
	Conditions []Condition
	// When must hold as well as Conditions; nil when absent.
	When            *Expr
	Updates         []Update
	Operation       *Operation
	Trigger         []Schedule
	Switch          *Switch
	Loop            *Loop
	SessionUpdate   *SessionUpdate
	CloseConnection bool
	ReconnectBefore bool
	Ending          bool
	Alert           bool
	// Framing, when set, becomes the framing of the socket the rule answered, from the next
	// input on.
	Framing *Framing
	// Unbounded exempts the rule's replies from the UDP amplification guard
	// (amplification: Unbounded).
	Unbounded bool
	// SharedReads and SharedWrites are the shared variables (indexes into Program.Shared,
	// ascending) the rule reads (conditions, sources, operation inputs, response, the
	// conditions of its asyncSwitch and asyncLoop) and writes (captures, updates, operation
	// outputs). A rule with either runs its memory as one atomic step on the store.
	SharedReads, SharedWrites []int
}

// Group is a compiled rule group.
type Group struct {
	ID         string
	Regex      *Regexp
	Conditions []Condition
	Rules      []*Rule
	// Slot is the group regex's slot in Program.Prefilter; its rules follow it.
	Slot int
	// SharedReads are the shared variables its conditions read.
	SharedReads []int
}

// Capture stores a regex's find into a variable.
type Capture struct {
	Regex *Regexp
	Var   VarRef
}

// Condition compares a variable with a value or another variable.
type Condition struct {
	Var   VarRef
	Value value.Value
	From  *VarRef
}

// Update sets a variable: to Value, to the variable From, or to the result of Expr.
type Update struct {
	Var   VarRef
	Value value.Value
	From  *VarRef
	Expr  *Expr
}

// OperandKind says where an operation input comes from.
type OperandKind uint8

const (
	OperandLiteral OperandKind = iota
	OperandVar
	OperandInput // EXT_IN
	OperandIP
	OperandPort
	OperandSessionKey
	OperandSessionValue
)

// Operand is one operation input.
type Operand struct {
	Kind    OperandKind
	Literal value.Value
	Var     VarRef
}

// Operation is a compiled built-in operation.
type Operation struct {
	Op      *ops.Op
	Inputs  []Operand
	Outputs []VarRef
}

// Schedule runs Rule after Delay; MaxIterations is used by loops (0 = unbounded).
type Schedule struct {
	Rule          *Rule
	Delay         time.Duration
	MaxIterations int
}

// Switch is a compiled asyncSwitch.
type Switch struct {
	Options []SwitchOption
	Default []Schedule
}

// SwitchOption is one branch of a Switch.
type SwitchOption struct {
	Conditions []Condition
	Trigger    []Schedule
}

// Loop is a compiled asyncLoop.
type Loop struct {
	Conditions []Condition
	Rules      []Schedule
}
