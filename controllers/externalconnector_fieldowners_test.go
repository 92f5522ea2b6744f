package controllers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/statusapply"
)

// The controller and the engine write the status side by side, each its own fields under
// its own field manager: the controller's writes leave the engine's fields alone, with no
// lock between them.
func TestStatusWritersOwnTheirFields(t *testing.T) {
	ns := namespace(t)
	createRules(t, ns, "r", serverRules)
	ec := createConnector(t, ns, "shared", `{rules: r}`)
	connectorWhen(t, ns, "shared", "resolved", func(ec *v1alpha1.ExternalConnector) error {
		return hasCondition(ec, "RulesResolved", metav1.ConditionTrue, "Resolved")
	})

	// Play the engine: its fields, applied as it applies them.
	connected := metav1.Condition{Type: v1alpha1.ConditionEngineConnected, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReasonEngineConnected, Message: "1 pod(s) connected to the engine: shared-0", LastTransitionTime: metav1.NewTime(time.Now().Truncate(time.Second))}
	sharedReady := metav1.Condition{Type: v1alpha1.ConditionSharedMemoryReady, Status: metav1.ConditionTrue,
		Reason: v1alpha1.ReasonSharedMemoryReady, Message: "1 pod(s) reach the shared-memory store redis://r:6379/0: shared-0", LastTransitionTime: connected.LastTransitionTime}
	conditions, err := statusapply.Conditions([]metav1.Condition{connected, sharedReady}, v1alpha1.ConditionEngineConnected, v1alpha1.ConditionSharedMemoryReady)
	if err != nil {
		t.Fatal(err)
	}
	engineFields := statusapply.Fields{
		"conditions":  conditions,
		"connections": map[string]any{"active": int64(1), "total": int64(5), "rejected": int64(2)},
		"activities":  map[string]any{"total": int64(9), "recorded": int64(8), "dropped": int64(1)},
	}
	if err := statusapply.Apply(context.Background(), operator, ec, "parley-engine", engineFields); err != nil {
		t.Fatal(err)
	}

	// The controller writes its fields again (a new generation, a new Ready).
	change(t, ec, false, func() { ec.Spec.Replicas = new(int32(0)) })
	got := connectorWhen(t, ns, "shared", "scaled to zero", func(ec *v1alpha1.ExternalConnector) error {
		return hasCondition(ec, "Ready", metav1.ConditionFalse, "ScaledToZero")
	})
	st := got.Status
	if st.Connections != (v1alpha1.ConnectionCounts{Active: 1, Total: 5, Rejected: 2}) ||
		st.Activities != (v1alpha1.ActivityCounts{Total: 9, Recorded: 8, Dropped: 1}) {
		t.Errorf("the engine's counters changed: connections %+v activities %+v", st.Connections, st.Activities)
	}
	if err := hasCondition(got, "EngineConnected", metav1.ConditionTrue, "Connected", "shared-0"); err != nil {
		t.Error(err)
	}
	if err := hasCondition(got, "SharedMemoryReady", metav1.ConditionTrue, "StoreReady", "shared-0"); err != nil {
		t.Error(err)
	}

	// Who owns what, as the API server records it: every status write is an apply.
	owned := map[string]string{}
	for _, mf := range got.ManagedFields {
		if mf.Subresource != "status" {
			continue
		}
		if mf.Operation != metav1.ManagedFieldsOperationApply {
			t.Errorf("%s writes the status by %s, not by server-side apply", mf.Manager, mf.Operation)
		}
		if mf.FieldsV1 != nil {
			owned[mf.Manager] = mf.FieldsV1.GetRawString()
		}
	}
	for manager, fields := range map[string][]string{
		"parley-externalconnector": {`"f:phase"`, `"f:replicas"`, `"f:readyReplicas"`, `"f:observedGeneration"`, `"f:rules"`,
			`"f:mode"`, `"f:transport"`, `"f:port"`, `"f:endpoint"`, `k:{\"type\":\"RulesResolved\"}`, `k:{\"type\":\"Ready\"}`},
		"parley-engine": {`"f:connections"`, `"f:activities"`, `k:{\"type\":\"EngineConnected\"}`, `k:{\"type\":\"SharedMemoryReady\"}`},
	} {
		set, ok := owned[manager]
		if !ok {
			t.Errorf("no status fields owned by %s: %v", manager, owned)
			continue
		}
		for _, f := range fields {
			if !strings.Contains(set, f) {
				t.Errorf("%s does not own %s: %s", manager, f, set)
			}
		}
	}
	for _, f := range []string{`"f:connections"`, `k:{\"type\":\"EngineConnected\"}`, `k:{\"type\":\"SharedMemoryReady\"}`} {
		if strings.Contains(owned["parley-externalconnector"], f) {
			t.Errorf("the controller owns the engine's %s", f)
		}
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionEngineConnected); c != nil && !c.LastTransitionTime.Equal(&connected.LastTransitionTime) {
		t.Errorf("EngineConnected lastTransitionTime %v, want %v", c.LastTransitionTime, connected.LastTransitionTime)
	}
}
