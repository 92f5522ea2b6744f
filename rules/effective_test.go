package rules_test

import (
	"testing"

	"k8s.io/utils/ptr"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

func TestEffective(t *testing.T) {
	written := v1alpha1.ConversationRulesSpec{Operation: v1alpha1.Operation{Mode: v1alpha1.ModeClient, IP: "10.0.0.1", Port: 7000}}
	for _, tc := range []struct {
		name     string
		o        v1alpha1.Overrides
		wantIP   string
		wantPort int32
	}{
		{"none keeps the rules' own", v1alpha1.Overrides{}, "10.0.0.1", 7000},
		{"port", v1alpha1.Overrides{Port: ptr.To[int32](7443)}, "10.0.0.1", 7443},
		{"ip", v1alpha1.Overrides{IP: ptr.To("192.0.2.7")}, "192.0.2.7", 7000},
		{"both", v1alpha1.Overrides{IP: ptr.To("192.0.2.7"), Port: ptr.To[int32](1)}, "192.0.2.7", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := written.DeepCopy()
			eff := rules.Effective(spec, tc.o)
			if eff.Operation.IP != tc.wantIP || eff.Operation.Port != tc.wantPort {
				t.Errorf("effective operation %s:%d, want %s:%d", eff.Operation.IP, eff.Operation.Port, tc.wantIP, tc.wantPort)
			}
			if spec.Operation != written.Operation {
				t.Errorf("Effective changed the spec as written: %+v", spec.Operation)
			}
			p, errs := rules.CompileEffective("r", 3, spec, tc.o)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if p.IP != tc.wantIP || p.Port != int(tc.wantPort) {
				t.Errorf("program serves %s:%d, want %s:%d", p.IP, p.Port, tc.wantIP, tc.wantPort)
			}
			// Status and activities name the rules as written, whatever the overrides.
			if want := (v1alpha1.RulesRef{Name: "r", Generation: 3, Hash: rules.Hash(&written)}); p.Ref != want {
				t.Errorf("Ref = %+v, want %+v", p.Ref, want)
			}
		})
	}
}

// A rules file without a port is a template: it compiles only with the connector's port.
func TestCompileEffectiveFillsWhatTheRulesLeaveOut(t *testing.T) {
	template := &v1alpha1.ConversationRulesSpec{}
	if _, errs := rules.CompileEffective("r", 1, template, v1alpha1.Overrides{}); len(errs) != 1 || errs[0].Field != "spec.operation.port" {
		t.Errorf("without a port override: %v, want spec.operation.port required", errs)
	}
	if _, errs := rules.CompileEffective("r", 1, template, v1alpha1.Overrides{Port: ptr.To[int32](6379)}); len(errs) > 0 {
		t.Errorf("with a port override: %v", errs)
	}
}

func TestConnectorOverrides(t *testing.T) {
	if o := (&v1alpha1.ExternalConnectorSpec{}).Overrides(); o.IP != nil || o.Port != nil {
		t.Errorf("empty spec overrides %+v, want none", o)
	}
	spec := &v1alpha1.ExternalConnectorSpec{IP: "::1", Port: ptr.To[int32](8080)}
	o := spec.Overrides()
	if o.IP == nil || *o.IP != "::1" || o.Port == nil || *o.Port != 8080 {
		t.Fatalf("overrides %+v", o)
	}
	*o.Port = 1
	if *spec.Port != 8080 {
		t.Error("Overrides shares the spec's port")
	}
}

func TestShortHash(t *testing.T) {
	h := rules.Hash(&v1alpha1.ConversationRulesSpec{})
	if got := rules.ShortHash(h); got != h[:len("sha256:")+12] || len(got) != 19 {
		t.Errorf("ShortHash(%s) = %s", h, got)
	}
	if got := rules.ShortHash("sha256:ab"); got != "sha256:ab" {
		t.Errorf("a short hash is kept whole: %s", got)
	}
}
