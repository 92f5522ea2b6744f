package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules/codec"
	"github.com/parley-dev/parley/rules/expr"
	"github.com/parley-dev/parley/rules/value"
)

// Defaults of the operation section (Lope's, but for the listen backlog: an unset
// connectionQueue is the system's maximum, as Go's own listeners use, because a decoy is
// scanned in bursts and Lope's 5 drops their SYNs).
const (
	DefaultMaxInputSize   = 1024
	DefaultMaxConnections = 5
	// DefaultPeerPrefixV6: an IPv6 host is usually given a whole /64.
	DefaultPeerPrefixV6   = 64
	DefaultGenerateLength = 12
	// MaxZeroDelayChain bounds chains of async runs scheduled without delay.
	MaxZeroDelayChain = 64
	// MaxChainRuns bounds the async runs scheduled without delay that one input, the start
	// of a conversation or one run that came after a delay may set off in all, whatever the
	// rules' fan-out (a rule triggering two that each trigger two...).
	MaxChainRuns      = 256
	maxInputSizeLimit = 1 << 20
)

// Reserved names that cannot be declared as variables.
var reserved = map[string]bool{
	TemplateIP: true, TemplatePort: true, operandInput: true, "SESSION_KEY": true, "SESSION_VALUE": true,
}

// Compile validates spec and compiles it. name and generation identify the rules in
// activities. All errors are returned together, each with its field path under "spec".
func Compile(name string, generation int64, spec *v1alpha1.ConversationRulesSpec) (*Program, field.ErrorList) {
	c := &compiler{spec: spec, root: field.NewPath("spec"), byID: map[int32]*Rule{}}
	p := c.compile()
	if len(c.errs) > 0 {
		return nil, c.errs
	}
	p.Ref = v1alpha1.RulesRef{Name: name, Generation: generation, Hash: Hash(spec)}
	return p, nil
}

// Effective is the conversation a connector runs: spec with the connector's overrides
// folded in. spec itself is left as written. The controllers, the engine and the pod all
// derive what a connector serves through it.
func Effective(spec *v1alpha1.ConversationRulesSpec, o v1alpha1.Overrides) *v1alpha1.ConversationRulesSpec {
	eff := spec.DeepCopy()
	if o.IP != nil {
		eff.Operation.IP = *o.IP
	}
	if o.Port != nil {
		eff.Operation.Port = *o.Port
	}
	return eff
}

// CompileEffective compiles the effective conversation of spec under o (see Effective).
// The Program's Ref still names the rules as written (their Hash), as status and
// activities report them; its IP and Port are the effective ones.
func CompileEffective(name string, generation int64, spec *v1alpha1.ConversationRulesSpec, o v1alpha1.Overrides) (*Program, field.ErrorList) {
	p, errs := Compile(name, generation, Effective(spec, o))
	if len(errs) > 0 {
		return nil, errs
	}
	p.Ref.Hash = Hash(spec)
	return p, nil
}

// ShortHash is a Hash cut to its first 12 hex digits, for messages and events.
func ShortHash(h string) string {
	if len(h) > len("sha256:")+12 {
		return h[:len("sha256:")+12]
	}
	return h
}

// Hash is the sha256 of the spec's canonical JSON, as reported in status and activities.
func Hash(spec *v1alpha1.ConversationRulesSpec) string {
	b, err := json.Marshal(spec)
	if err != nil {
		// A spec is plain data; Marshal cannot fail on it.
		panic(fmt.Sprintf("marshal ConversationRulesSpec: %v", err))
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

type compiler struct {
	spec *v1alpha1.ConversationRulesSpec
	root *field.Path
	errs field.ErrorList
	p    *Program

	byID map[int32]*Rule
	// pending trigger references, resolved once every rule is known.
	refs []ruleRef
	// exprFailed notes that the expression environment could not be built (reported once).
	exprFailed bool
}

// ruleRef is a schedule waiting for its rule to be known.
type ruleRef struct {
	entry *field.Path // the schedule: its ruleID is entry.ruleID
	from  *Rule       // the rule that schedules
	id    int32
	// zeroDelay marks a schedule without delay, an edge of the graph that must have no cycle.
	zeroDelay bool
	set       func(*Rule)
}

func (c *compiler) add(err *field.Error) { c.errs = append(c.errs, err) }

func (c *compiler) compile() *Program {
	c.p = &Program{}
	c.operation(c.root.Child("operation"))
	c.operationFraming(c.root.Child("operation"))
	c.session(c.root.Child("operation", "session"))
	c.memory(c.root.Child("memory"))
	c.transform(c.root.Child("operation", "transform"))
	c.conversation(c.root.Child("conversation"))
	return c.p
}

func (c *compiler) operation(path *field.Path) {
	op := &c.spec.Operation
	p := c.p
	p.Mode = op.Mode
	switch op.Mode {
	case "":
		p.Mode = v1alpha1.ModeServer
	case v1alpha1.ModeServer, v1alpha1.ModeClient:
	default:
		c.add(field.NotSupported(path.Child("mode"), op.Mode, []string{string(v1alpha1.ModeServer), string(v1alpha1.ModeClient)}))
	}
	p.Transport = op.Transport
	switch op.Transport {
	case "":
		p.Transport = v1alpha1.TransportTCP
	case v1alpha1.TransportTCP, v1alpha1.TransportUDP:
	default:
		c.add(field.NotSupported(path.Child("transport"), op.Transport, []string{string(v1alpha1.TransportTCP), string(v1alpha1.TransportUDP)}))
	}
	p.IP, p.IPv6, p.Port = op.IP, op.IPv6, int(op.Port)
	switch {
	case op.Port == 0:
		c.add(field.Required(path.Child("port"), "a port between 1 and 65535"))
	case op.Port < 0 || op.Port > 65535:
		c.add(field.Invalid(path.Child("port"), op.Port, "must be between 1 and 65535"))
	}
	if p.Mode == v1alpha1.ModeClient && op.IP == "" {
		c.add(field.Required(path.Child("ip"), "client mode needs the target host"))
	}
	p.Encoding = op.Encoding
	if p.Encoding == "" {
		p.Encoding = v1alpha1.EncodingUTF8
	}
	cd, err := codec.For(p.Encoding)
	if err != nil {
		c.add(field.NotSupported(path.Child("encoding"), op.Encoding, []string{"utf-8", "utf-16", "utf-32", "ascii", "binary"}))
		cd, _ = codec.For(v1alpha1.EncodingUTF8)
	}
	p.Codec = cd
	switch op.IdentifyBy {
	case "", v1alpha1.IdentifyByAddress:
		p.IdentifyByAddress = true
	case v1alpha1.IdentifyByIP:
	default:
		c.add(field.NotSupported(path.Child("identifyBy"), op.IdentifyBy, []string{string(v1alpha1.IdentifyByAddress), string(v1alpha1.IdentifyByIP)}))
	}
	p.InteractionTimeout = c.duration(path.Child("interactionTimeout"), op.InteractionTimeout)
	p.ExecutionDelay = c.duration(path.Child("executionDelay"), op.ExecutionDelay)
	p.ConnectionQueue = c.intIn(path.Child("connectionQueue"), op.ConnectionQueue, 0, 1, 65535)
	p.MaxInputSize = c.intIn(path.Child("maxInputSize"), op.MaxInputSize, DefaultMaxInputSize, 1, maxInputSizeLimit)
	p.MaxConnections = c.intIn(path.Child("maxConcurrentConnections"), op.MaxConcurrentConnections, DefaultMaxConnections, 1, 1000000)
	p.MaxConnectionsPerPeer = c.intIn(path.Child("maxConnectionsPerPeer"), op.MaxConnectionsPerPeer, 0, 1, 1000000)
	p.PeerPrefixV6 = c.intIn(path.Child("peerPrefixV6"), op.PeerPrefixV6, DefaultPeerPrefixV6, 1, 128)
	p.MaxConversationAge = c.duration(path.Child("maxConversationAge"), op.MaxConversationAge)
	p.OnlyFirstHit = op.OnlyFirstHit
	p.TLS = op.TLS
	if op.TLS.ClientAuthentication && !op.TLS.Enabled {
		c.add(field.Invalid(path.Child("tls", "clientAuthentication"), true, "needs tls.enabled"))
	}
	c.capacityPolicy(path.Child("capacityPolicy"), op.CapacityPolicy)
	p.CloseAfterReplying = op.Socket.CloseAfterReplying
	p.RuleClosing = (op.Socket.RuleTriggeredClosing == nil || *op.Socket.RuleTriggeredClosing) && !op.Socket.CloseAfterReplying
	switch op.MemoryUpdateWhen {
	case "", v1alpha1.MemoryUpdateExecuted:
	case v1alpha1.MemoryUpdateDetected:
		p.UpdateOnDetected = true
	default:
		c.add(field.NotSupported(path.Child("memoryUpdateWhen"), op.MemoryUpdateWhen, []string{string(v1alpha1.MemoryUpdateDetected), string(v1alpha1.MemoryUpdateExecuted)}))
	}
	p.ReportMemory, p.AlertAll = op.ReportMemory, op.AlertAll
}

// capacityPolicy compiles operation.capacityPolicy. EvictIdlest is for UDP servers without
// DTLS, whose sources prove nothing: a TCP or DTLS peer has proven its address by a
// handshake, DTLS counts its handshakes against the cap before any conversation exists (so
// a hello over it is refused before there is anything to evict for), and a client opens its
// conversations itself.
func (c *compiler) capacityPolicy(path *field.Path, policy v1alpha1.CapacityPolicy) {
	switch policy {
	case "", v1alpha1.CapacityRefuse:
	case v1alpha1.CapacityEvictIdlest:
		if !c.plainUDPServer() {
			c.add(field.Forbidden(path, "EvictIdlest is for UDP servers without DTLS, whose sources prove nothing: a TCP or DTLS peer has proven its address by a handshake, and a client opens its own conversations"))
			return
		}
		c.p.EvictIdlest = true
	default:
		c.add(field.NotSupported(path, policy, []string{string(v1alpha1.CapacityRefuse), string(v1alpha1.CapacityEvictIdlest)}))
	}
}

// plainUDPServer says whether the operation compiled so far is a UDP server without DTLS:
// the one kind whose sources prove nothing, where the amplification guard and
// capacityPolicy EvictIdlest apply.
func (c *compiler) plainUDPServer() bool {
	return c.p.Transport == v1alpha1.TransportUDP && c.p.Mode != v1alpha1.ModeClient && !c.p.TLS.Enabled
}

func (c *compiler) duration(path *field.Path, d *metav1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	if d.Duration < 0 {
		c.add(field.Invalid(path, d.Duration.String(), "must not be negative"))
		return 0
	}
	return d.Duration
}

func (c *compiler) intIn(path *field.Path, v *int32, def, lo, hi int) int {
	if v == nil {
		return def
	}
	if int(*v) < lo || int(*v) > hi {
		c.add(field.Invalid(path, *v, fmt.Sprintf("must be between %d and %d", lo, hi)))
		return def
	}
	return int(*v)
}

func (c *compiler) memory(path *field.Path) {
	m := &c.spec.Memory
	c.p.Connection = c.variables(path.Child("connection"), m.Connection)
	c.p.Global = c.variables(path.Child("global"), m.Global)
	c.p.Shared = c.variables(path.Child("shared"), m.Shared)
	c.sharedMemory(path)
}

func (c *compiler) variables(path *field.Path, decls []v1alpha1.Variable) []*Variable {
	out := make([]*Variable, 0, len(decls))
	seen := map[string]bool{}
	for i, d := range decls {
		vp := path.Index(i)
		switch {
		case d.Name == "":
			c.add(field.Required(vp.Child("name"), ""))
		case reserved[d.Name]:
			c.add(field.Invalid(vp.Child("name"), d.Name, "is a reserved name"))
		case !isIdentifier(d.Name):
			c.add(field.Invalid(vp.Child("name"), d.Name, "must start with a letter or _ and hold only letters, digits, _, . and -"))
		case seen[d.Name]:
			c.add(field.Duplicate(vp.Child("name"), d.Name))
		}
		seen[d.Name] = true
		kind, ok := value.ParseKind(string(d.Type))
		if !ok {
			c.add(field.NotSupported(vp.Child("type"), d.Type, []string{"int", "float", "bool", "string"}))
		}
		v := &Variable{Name: d.Name, Kind: kind, Default: value.Zero(kind), Report: d.Report}
		if d.Default != "" {
			def, err := value.Parse(kind, d.Default)
			if err != nil {
				c.add(field.Invalid(vp.Child("default"), d.Default, err.Error()))
			} else {
				v.Default = def
			}
		}
		if d.Generate != nil {
			v.Generate = c.generator(vp.Child("generate"), kind, d.Generate)
		}
		out = append(out, v)
	}
	return out
}

func (c *compiler) generator(path *field.Path, kind value.Kind, g *v1alpha1.Generate) *Generator {
	gen := &Generator{}
	switch kind {
	case value.String:
		gen.Length = c.intIn(path.Child("length"), g.Length, DefaultGenerateLength, 1, 4096)
		cs := g.Charset
		if cs == "" {
			cs = v1alpha1.CharsetAlphanumericLower
		}
		alphabet, ok := alphabets[cs]
		if !ok {
			names := make([]string, 0, len(alphabets))
			for k := range alphabets {
				names = append(names, string(k))
			}
			sort.Strings(names)
			c.add(field.NotSupported(path.Child("charset"), g.Charset, names))
		}
		gen.Alphabet = alphabet
		if g.Min != "" || g.Max != "" {
			c.add(field.Invalid(path, "min/max", "min and max are for int and float variables"))
		}
	case value.Int, value.Float:
		if g.Length != nil || g.Charset != "" {
			c.add(field.Invalid(path, "length/charset", "length and charset are for string variables"))
		}
		lo, errLo := value.Parse(kind, g.Min)
		hi, errHi := value.Parse(kind, g.Max)
		if errLo != nil {
			c.add(field.Invalid(path.Child("min"), g.Min, errLo.Error()))
		}
		if errHi != nil {
			c.add(field.Invalid(path.Child("max"), g.Max, errHi.Error()))
		}
		if errLo == nil && errHi == nil {
			switch {
			case hi.Float64() < lo.Float64():
				c.add(field.Invalid(path.Child("max"), g.Max, "must not be below min"))
			case kind == value.Int && lo.AsInt() <= 0 && hi.AsInt() >= math.MaxInt64+lo.AsInt():
				c.add(field.Invalid(path, g.Min+".."+g.Max, "range too wide"))
			case kind == value.Float && (math.IsInf(lo.AsFloat(), 0) || math.IsInf(hi.AsFloat(), 0) || math.IsNaN(lo.AsFloat()) || math.IsNaN(hi.AsFloat())):
				c.add(field.Invalid(path, g.Min+".."+g.Max, "must be finite"))
			}
		}
		gen.Min, gen.Max = lo, hi
	case value.Bool:
		if g.Length != nil || g.Charset != "" || g.Min != "" || g.Max != "" {
			c.add(field.Invalid(path, "", "a generated bool is a coin toss: no length, charset, min or max"))
		}
	}
	return gen
}

// lookup finds a declared variable: connection scope first, as templates do, then global,
// then shared (a shared name is unique across scopes: sharedMemory refuses the others).
func (c *compiler) lookup(name string) (VarRef, bool) {
	for i, v := range c.p.Connection {
		if v.Name == name {
			return VarRef{Scope: ScopeConnection, Index: i, Kind: v.Kind, Name: name}, true
		}
	}
	for i, v := range c.p.Global {
		if v.Name == name {
			return VarRef{Scope: ScopeGlobal, Index: i, Kind: v.Kind, Name: name}, true
		}
	}
	for i, v := range c.p.Shared {
		if v.Name == name {
			return VarRef{Scope: ScopeShared, Index: i, Kind: v.Kind, Name: name}, true
		}
	}
	return VarRef{}, false
}

func (c *compiler) variable(path *field.Path, name string) (VarRef, bool) {
	if name == "" {
		c.add(field.Required(path, "a declared variable"))
		return VarRef{}, false
	}
	ref, ok := c.lookup(name)
	if !ok {
		c.add(field.NotFound(path, name))
	}
	return ref, ok
}

func (c *compiler) template(path *field.Path, text string, isBase64 bool) *Template {
	if isBase64 {
		raw, ok := c.base64(path, text)
		if !ok {
			return nil
		}
		text = c.p.Codec.Decode(raw)
	}
	t, unknown := parseTemplate(text, c.p.Codec, func(name string) (part, bool) {
		switch name {
		case TemplateIP:
			return part{kind: partIP}, true
		case TemplatePort:
			return part{kind: partPort}, true
		case TemplateSessionKey, TemplateSessionValue:
			if c.p.Session == nil {
				return part{}, false
			}
			if name == TemplateSessionKey {
				return part{kind: partText, text: c.p.Session.Key}, true
			}
			return part{kind: partSessionValue}, true
		}
		ref, ok := c.lookup(name)
		return part{kind: partVar, ref: ref}, ok
	}, func(src string) part {
		return part{kind: partExpr, expr: c.compileExpr(path, src, expr.Printable)}
	})
	for _, name := range unknown {
		c.add(field.Invalid(path, "{{"+name+"}}", "unknown template variable (declare it under spec.memory, or use IP or PORT; SESSION_KEY and SESSION_VALUE need operation.session)"))
	}
	return t
}

// Count is the number of custom rules in a spec, valid or not.
func Count(spec *v1alpha1.ConversationRulesSpec) int {
	n := len(spec.Conversation.Rules)
	for _, g := range spec.Conversation.Groups {
		n += len(g.Rules)
	}
	return n
}
