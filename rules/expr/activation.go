package expr

import (
	"net/netip"
	"time"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

	"github.com/parley-dev/parley/rules/value"
)

// Memory gives an expression the variables it reads, by slot (the index in Env.Vars).
type Memory interface {
	ExprValue(slot int) value.Value
}

// Activation is what an expression reads while it runs. A conversation keeps one and sets
// its fields before each evaluation, under the conversation's lock: no map or closure is
// built per input, and a name is resolved only when an expression reads it.
type Activation struct {
	Input  string
	Raw    []byte
	Output string
	Peer   netip.AddrPort
	ConnID string
	// ConnInputs counts the conversation's inputs, this one included.
	ConnInputs   int64
	SessionKey   string
	SessionValue string
	Memory       Memory

	slots map[string]int
	now   time.Time
}

// NewActivation returns an activation for e's programs reading variables from m.
func (e *Env) NewActivation(m Memory) *Activation {
	return &Activation{Memory: m, slots: e.slots}
}

// ResolveName implements interpreter.Activation.
func (a *Activation) ResolveName(name string) (any, bool) {
	switch name {
	case NameInput:
		return types.String(a.Input), true
	case NameRaw:
		return types.Bytes(a.Raw), true
	case NameOutput:
		return types.String(a.Output), true
	case NamePeerIP:
		if !a.Peer.IsValid() {
			return types.String(""), true
		}
		return types.String(a.Peer.Addr().String()), true
	case NamePeerPort:
		return types.Int(a.Peer.Port()), true
	case NameConnID:
		return types.String(a.ConnID), true
	case NameConnInputs:
		return types.Int(a.ConnInputs), true
	case NameSessionKey:
		return types.String(a.SessionKey), true
	case NameSessionValue:
		return types.String(a.SessionValue), true
	case NameNow:
		if a.now.IsZero() {
			a.now = time.Now()
		}
		return types.Timestamp{Time: a.now}, true
	}
	slot, ok := a.slots[name]
	if !ok || a.Memory == nil {
		return nil, false
	}
	v := a.Memory.ExprValue(slot)
	switch v.Kind() {
	case value.Int:
		return types.Int(v.AsInt()), true
	case value.Float:
		return types.Double(v.AsFloat()), true
	case value.Bool:
		return types.Bool(v.AsBool()), true
	default:
		return types.String(v.AsString()), true
	}
}

// Parent implements interpreter.Activation: there is none.
func (a *Activation) Parent() interpreter.Activation { return nil }
