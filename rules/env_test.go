package rules_test

import (
	"net/netip"

	"github.com/parley-dev/parley/rules"
	"github.com/parley-dev/parley/rules/expr"
	"github.com/parley-dev/parley/rules/value"
)

// env resolves variables to their defaults; failed expressions are kept in *failed.
type env struct {
	p      *rules.Program
	failed *[]error
}

func (e env) Get(r rules.VarRef) value.Value {
	if r.Scope == rules.ScopeConnection {
		return e.p.Connection[r.Index].Default
	}
	return e.p.Global[r.Index].Default
}
func (env) PeerIP() string       { return "192.0.2.1" }
func (env) PeerPort() string     { return "4242" }
func (env) SessionValue() string { return "s3ss10n" }

// ExprValue implements expr.Memory.
func (e env) ExprValue(slot int) value.Value { return e.Get(e.p.Expr.Vars[slot]) }

func (e env) ExprActivation() *expr.Activation {
	a := e.p.Expr.NewActivation(e)
	a.Peer = netip.MustParseAddrPort("192.0.2.1:4242")
	return a
}

func (e env) ExprFailed(x *rules.Expr, err error) {
	if e.failed != nil {
		*e.failed = append(*e.failed, err)
	}
}
