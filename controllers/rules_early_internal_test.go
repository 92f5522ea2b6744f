package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// An edit of the rules a connector runs is written to status.rules before the workload is
// applied only when the workload stays as it is: same mode, transport, port and endpoint.
func TestRulesEditedInPlace(t *testing.T) {
	ec := &v1alpha1.ExternalConnector{ObjectMeta: metav1.ObjectMeta{Namespace: "decoys", Name: "redis"}}
	ref := v1alpha1.RulesRef{Name: "fake-redis", Generation: 1, Hash: "sha256:01"}
	server := target{rules: ref, mode: v1alpha1.ModeServer, transport: v1alpha1.TransportTCP, port: 6379}
	ec.Status.Rules = &ref
	ec.Status.Mode, ec.Status.Transport, ec.Status.Port = server.mode, server.transport, server.port
	ec.Status.Endpoint = server.endpoint(ec)
	edited := func(f func(*target)) resolution {
		t := server
		t.rules.Generation, t.rules.Hash = 2, "sha256:02"
		f(&t)
		return resolution{target: &t}
	}
	for name, tc := range map[string]struct {
		res  resolution
		want bool
	}{
		"a new generation, same workload": {edited(func(*target) {}), true},
		"the same rules":                  {resolution{target: &server}, false},
		"unresolved":                      {resolution{reason: v1alpha1.ReasonRulesInvalid}, false},
		"another port":                    {edited(func(t *target) { t.port = 6380 }), false},
		"another transport":               {edited(func(t *target) { t.transport = v1alpha1.TransportUDP }), false},
		"client mode":                     {edited(func(t *target) { t.mode, t.ip = v1alpha1.ModeClient, "192.0.2.1" }), false},
	} {
		if got := rulesEditedInPlace(ec, tc.res); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
	failed := ec.DeepCopy()
	failed.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonWorkloadFailed}}
	if rulesEditedInPlace(failed, edited(func(*target) {})) {
		t.Error("after a failed apply of the workload: the early write would clear WorkloadFailed for a moment")
	}
	fresh := ec.DeepCopy()
	fresh.Status = v1alpha1.ExternalConnectorStatus{}
	if rulesEditedInPlace(fresh, edited(func(*target) {})) {
		t.Error("a connector whose status names no rules yet: its first resolution is no in-place edit")
	}
}
