package expr

import (
	"cel.dev/cel-go/common/cost"
)

// Bounds of one expression. Every expression runs on a connector's socket path, for every
// input a peer chooses to send, so its work is bounded twice: its cost is estimated when the
// rules are compiled, for the largest input the operation allows, and refused over MaxCost;
// and the same limit cuts an evaluation that gets there anyway (a variable longer than
// estimated), which then fails like any run-time error.
const (
	// MaxCost is the cost budget of one evaluation, in CEL's cost units (about one per
	// operation, a tenth per character scanned). A million keeps the worst evaluation in the
	// low milliseconds.
	MaxCost = 1_000_000
	// DefaultValueSize is the length a string variable is estimated at: the longest value a
	// generator makes. A variable can hold more (captures of long inputs, concatenations):
	// the run-time limit bounds what it costs then.
	DefaultValueSize = 4096
	// maxSource, maxNodes and maxRange bound the expressions themselves and lists.range().
	maxSource = 16 << 10
	maxNodes  = 10_000
	maxRange  = 1 << 16
	// peerIPSize is the longest text of an IP address (IPv6 with a zone aside).
	peerIPSize = 45
	// connIDSize bounds a connection id (c-000001 and up).
	connIDSize = 32
)

// anySize stands for a value of any length, when an estimate must hold whatever the sizes.
const anySize = 1 << 40

// sizer tells CEL's estimator how large the names of an Env can be; with anySize set, as
// large as they like.
type sizer struct {
	e       *Env
	anySize bool
}

func (s sizer) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	path := n.Path()
	if len(path) != 1 {
		return nil
	}
	var size uint64 // an int would not hold anySize on 32-bit platforms
	switch path[0] {
	case NameInput, NameRaw:
		size = uint64(s.e.sizes.Input)
	case NameOutput, NameSessionKey, NameSessionValue:
		size = uint64(s.e.sizes.Value)
	case NamePeerIP:
		size = peerIPSize
	case NameConnID:
		size = connIDSize
	default:
		if _, ok := s.e.slots[path[0]]; !ok {
			return nil
		}
		size = uint64(s.e.sizes.Value)
	}
	if s.anySize {
		size = anySize
	}
	est := cost.RangedSizeEstimate(0, size)
	return &est
}

func (sizer) EstimateCallCost(function, overloadID string, target *cost.AstNode, args []cost.AstNode) *cost.CallEstimate {
	return nil
}
