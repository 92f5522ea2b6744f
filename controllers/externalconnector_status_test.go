package controllers

import (
	"encoding/json"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// The controller applies its fields of the status, every one of them, and no field of the
// engine's: applying a field it does not own would take it from the engine, and leaving out
// one it owns would remove it.
func TestOwnedStatus(t *testing.T) {
	at := metav1.NewTime(time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC))
	resolved := metav1.Condition{Type: v1alpha1.ConditionRulesResolved, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonResolved,
		Message: "resolved", ObservedGeneration: 3, LastTransitionTime: at}
	ready := metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonReplicasNotReady,
		Message: "0/1", ObservedGeneration: 3, LastTransitionTime: at}
	connected := metav1.Condition{Type: v1alpha1.ConditionEngineConnected, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonEngineConnected,
		Message: "1 pod(s)", ObservedGeneration: 3, LastTransitionTime: at}
	ours := v1alpha1.ExternalConnectorStatus{
		Phase:      v1alpha1.PhasePending,
		Conditions: []metav1.Condition{resolved, ready},
		Rules:      &v1alpha1.RulesRef{Name: "r", Generation: 2, Hash: "abc"},
		Mode:       v1alpha1.ModeServer, Transport: v1alpha1.TransportUDP, Port: 53, Endpoint: "decoy.ns.svc:53/UDP",
		Replicas: 2, ReadyReplicas: 1, ObservedGeneration: 3,
	}
	full := ours
	full.Conditions = []metav1.Condition{connected, resolved, ready}
	full.Connections = v1alpha1.ConnectionCounts{Active: 1, Total: 2, Rejected: 3}
	full.Activities = v1alpha1.ActivityCounts{Total: 4, Recorded: 5, Dropped: 6}
	full.LastActivityTime = &at

	fields, err := ownedStatus(&full)
	if err != nil {
		t.Fatal(err)
	}
	var got v1alpha1.ExternalConnectorStatus
	roundTrip(t, fields, &got)
	if !equality.Semantic.DeepEqual(got, ours) {
		t.Errorf("applied\n %s\nwant\n %s", dump(got), dump(ours))
	}
	for _, f := range []string{"connections", "activities", "lastActivityTime"} {
		if _, ok := fields[f]; ok {
			t.Errorf("the controller applies the engine's %s", f)
		}
	}

	// Zero counts are applied as zeros; what the rules never resolved to is not applied.
	fresh, err := ownedStatus(&v1alpha1.ExternalConnectorStatus{Phase: v1alpha1.PhasePending, ObservedGeneration: 1,
		Conditions: []metav1.Condition{connected}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(fresh)
	want := `{"conditions":[],"observedGeneration":1,"phase":"Pending","readyReplicas":0,"replicas":0}`
	if string(b) != want {
		t.Errorf("applied %s\nwant    %s", b, want)
	}
}

func roundTrip(t *testing.T, from, to any) {
	t.Helper()
	b, err := json.Marshal(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, to); err != nil {
		t.Fatal(err)
	}
}

func dump(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
