package engine

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"k8s.io/utils/ptr"

	enginev1 "github.com/parley-dev/parley/api/engine/v1"
)

func TestSameConversation(t *testing.T) {
	base := &enginev1.Config{Spec: []byte(`{"operation":{"port":1}}`), RulesName: "r", Generation: 2, Hash: "sha256:a"}
	with := func(f func(c *enginev1.Config)) *enginev1.Config {
		c := proto.CloneOf(base)
		f(c)
		return c
	}
	for _, tc := range []struct {
		name string
		a, b *enginev1.Config
		same bool
	}{
		{"nothing sent yet", base, nil, false},
		{"equal", base, with(func(*enginev1.Config) {}), true},
		{"paused travels as an order", base, with(func(c *enginev1.Config) { c.Paused = true }), true},
		{"new generation", base, with(func(c *enginev1.Config) { c.Generation, c.Hash = 3, "sha256:b" }), false},
		{"port override set", base, with(func(c *enginev1.Config) { c.Port = ptr.To[int32](1) }), false},
		{"port override changed", with(func(c *enginev1.Config) { c.Port = ptr.To[int32](1) }), with(func(c *enginev1.Config) { c.Port = ptr.To[int32](2) }), false},
		{"ip override set to empty", base, with(func(c *enginev1.Config) { c.Ip = ptr.To("") }), false},
		{"TLS server name", base, with(func(c *enginev1.Config) { c.TlsServerName = "x" }), false},
		{"TLS verification", base, with(func(c *enginev1.Config) { c.TlsInsecureSkipVerify = true }), false},
	} {
		if got := sameConversation(tc.a, tc.b); got != tc.same {
			t.Errorf("%s: sameConversation = %v, want %v", tc.name, got, tc.same)
		}
	}
	if base.Paused {
		t.Error("sameConversation changed its argument")
	}
}
