package rules_test

import (
	"github.com/parley-dev/parley/rules"
	"github.com/parley-dev/parley/rules/value"
)

// env resolves variables to their defaults.
type env struct{ p *rules.Program }

func (e env) Get(r rules.VarRef) value.Value {
	if r.Scope == rules.ScopeConnection {
		return e.p.Connection[r.Index].Default
	}
	return e.p.Global[r.Index].Default
}
func (env) PeerIP() string       { return "192.0.2.1" }
func (env) PeerPort() string     { return "4242" }
func (env) SessionValue() string { return "s3ss10n" }
