package connector_test

import (
	"testing"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/connectortest"
)

func TestNetworkChanged(t *testing.T) {
	base := connector.NetworkOf(connectortest.Compile(t, `operation: {port: 7000}`))
	for _, tc := range []struct {
		name string
		spec string
		want string
	}{
		{"same network, other rules", `{operation: {port: 7000}, conversation: {greetings: {value: hi}}}`, ""},
		{"port", `operation: {port: 7001}`, "operation.port"},
		{"ip", `operation: {port: 7000, ip: 127.0.0.1}`, "operation.ip"},
		{"transport", `operation: {port: 7000, transport: UDP}`, "operation.transport"},
		{"tls", `operation: {port: 7000, tls: {enabled: true}}`, "operation.tls"},
		{"encoding is not the network", `operation: {port: 7000, encoding: binary}`, ""},
	} {
		if got := base.Changed(connector.NetworkOf(connectortest.Compile(t, tc.spec))); got != tc.want {
			t.Errorf("%s: Changed = %q, want %q", tc.name, got, tc.want)
		}
	}
	if n := connector.NetworkOf(connectortest.Compile(t, `operation: {port: 7000, mode: Client, ip: 10.0.0.1}`)); n.Mode != v1alpha1.ModeClient {
		t.Errorf("mode %s", n.Mode)
	}
}
