package engine

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"github.com/parley-dev/parley/api/v1alpha1"
)

// The engine applies its fields of the status, every one of them, counters at zero
// included, and none of the controller's.
func TestOwnedStatus(t *testing.T) {
	at := metav1.NewTime(time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC))
	st := v1alpha1.ExternalConnectorStatus{
		Phase: v1alpha1.PhaseRunning, Mode: v1alpha1.ModeServer, Port: 6379, Replicas: 1, ReadyReplicas: 1, ObservedGeneration: 2,
		Rules: &v1alpha1.RulesRef{Name: "r"},
		Conditions: []metav1.Condition{
			{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReplicasReady, Message: "1/1", LastTransitionTime: at},
			engineConnected(2, []string{"decoy-a", "decoy-b"}),
		},
		Connections: v1alpha1.ConnectionCounts{Total: 3},
		Activities:  v1alpha1.ActivityCounts{Total: 5, Recorded: 4, Dropped: 1},
	}
	st.Conditions[1].LastTransitionTime = at
	for _, tc := range []struct {
		name      string
		last      *metav1.Time
		datagrams *v1alpha1.DatagramCounts
		want      string
	}{
		{name: "no activity yet", want: `{"activities":{"dropped":1,"recorded":4,"total":5},` +
			`"conditions":[{"lastTransitionTime":"2025-03-04T05:06:07Z","message":"2 pod(s) connected to the engine: decoy-a, decoy-b","observedGeneration":2,"reason":"Connected","status":"True","type":"EngineConnected"}],` +
			`"connections":{"active":0,"rejected":0,"total":3}}`},
		{name: "with the last activity", last: &at, want: `{"activities":{"dropped":1,"recorded":4,"total":5},` +
			`"conditions":[{"lastTransitionTime":"2025-03-04T05:06:07Z","message":"2 pod(s) connected to the engine: decoy-a, decoy-b","observedGeneration":2,"reason":"Connected","status":"True","type":"EngineConnected"}],` +
			`"connections":{"active":0,"rejected":0,"total":3},"lastActivityTime":"2025-03-04T05:06:07Z"}`},
		{name: "with datagrams lost", datagrams: &v1alpha1.DatagramCounts{RateLimited: 7, Dropped: 2}, want: `{"activities":{"dropped":1,"recorded":4,"total":5},` +
			`"conditions":[{"lastTransitionTime":"2025-03-04T05:06:07Z","message":"2 pod(s) connected to the engine: decoy-a, decoy-b","observedGeneration":2,"reason":"Connected","status":"True","type":"EngineConnected"}],` +
			`"connections":{"active":0,"rejected":0,"total":3},"datagrams":{"dropped":2,"rateLimited":7}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := st
			st.LastActivityTime, st.Datagrams = tc.last, tc.datagrams
			fields, err := ownedStatus(&st)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(fields)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("applied %s\nwant    %s", b, tc.want)
			}
		})
	}
}

func TestEngineConnected(t *testing.T) {
	want := metav1.Condition{Type: v1alpha1.ConditionEngineConnected, Status: metav1.ConditionFalse, ObservedGeneration: 3,
		Reason: v1alpha1.ReasonEngineDisconnected, Message: "no connector pod is connected to the engine"}
	if c := engineConnected(3, nil); c != want {
		t.Errorf("no pods: %+v, want %+v", c, want)
	}
	want = metav1.Condition{Type: v1alpha1.ConditionEngineConnected, Status: metav1.ConditionTrue, ObservedGeneration: 3,
		Reason: v1alpha1.ReasonEngineConnected, Message: "1 pod(s) connected to the engine: decoy-a"}
	if c := engineConnected(3, []string{"decoy-a"}); c != want {
		t.Errorf("one pod: %+v, want %+v", c, want)
	}
}

func TestLastActivityTime(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	stored := func(s string) *metav1.Time { v := metav1.NewTime(at(s)); return &v }
	for _, tc := range []struct {
		name   string
		stored *metav1.Time
		last   time.Time
		want   *metav1.Time
	}{
		{"no activity yet", nil, time.Time{}, nil},
		{"the first activity, cut to the second", nil, at("2026-12-06T10:00:00.7Z"), stored("2026-12-06T10:00:00Z")},
		// The API stored 10:00:00 for an activity at 10:00:00.7: seeing it again is no change.
		{"same second as stored", stored("2026-12-06T10:00:00Z"), at("2026-12-06T10:00:00.7Z"), stored("2026-12-06T10:00:00Z")},
		{"a later second", stored("2026-12-06T10:00:00Z"), at("2026-12-06T10:00:01.2Z"), stored("2026-12-06T10:00:01Z")},
		{"older than stored (another replica's)", stored("2026-12-06T10:00:05Z"), at("2026-12-06T10:00:01Z"), stored("2026-12-06T10:00:05Z")},
	} {
		got := lastActivityTime(tc.stored, tc.last)
		if (got == nil) != (tc.want == nil) || got != nil && !got.Equal(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

// SharedMemoryReady is False as soon as one pod lost its store, naming the pods and the
// last error; True when every reporting pod reaches it.
func TestSharedMemoryReady(t *testing.T) {
	ready := &enginev1.SharedMemory{State: enginev1.SharedMemory_READY, Store: "redis://r:6379/0", LastError: "old"}
	lost := &enginev1.SharedMemory{State: enginev1.SharedMemory_LOST, Store: "redis://r:6379/0", LastError: "cannot reach the server"}
	want := metav1.Condition{Type: v1alpha1.ConditionSharedMemoryReady, Status: metav1.ConditionTrue, ObservedGeneration: 4,
		Reason: v1alpha1.ReasonSharedMemoryReady, Message: "2 pod(s) reach the shared-memory store redis://r:6379/0: a, b"}
	if c := sharedMemoryReady(4, []podStore{{"a", ready}, {"b", ready}}); c != want {
		t.Errorf("ready: %+v\nwant %+v", c, want)
	}
	want = metav1.Condition{Type: v1alpha1.ConditionSharedMemoryReady, Status: metav1.ConditionFalse, ObservedGeneration: 4,
		Reason: v1alpha1.ReasonSharedMemoryLost, Message: "1 pod(s) cannot reach the shared-memory store redis://r:6379/0: b; last error: cannot reach the server"}
	if c := sharedMemoryReady(4, []podStore{{"a", ready}, {"b", lost}}); c != want {
		t.Errorf("one lost: %+v\nwant %+v", c, want)
	}
}

// The engine owns SharedMemoryReady beside EngineConnected.
// A new engine (a restart, a new leader) carries on from the counts in the status: those
// the heartbeats add to, datagrams included, and none where the status has none.
func TestCountsReadBackFromStatus(t *testing.T) {
	st := &v1alpha1.ExternalConnectorStatus{
		Activities:  v1alpha1.ActivityCounts{Total: 1, Recorded: 2, Dropped: 3},
		Connections: v1alpha1.ConnectionCounts{Active: 9, Total: 4, Rejected: 5, Evicted: 6},
		Datagrams:   &v1alpha1.DatagramCounts{RateLimited: 7, Dropped: 8},
	}
	want := counts{activities: 1, recorded: 2, dropped: 3, connections: 4, rejected: 5, evicted: 6, rateLimited: 7, datagramsDropped: 8}
	if got := countsOf(st); got != want {
		t.Errorf("countsOf %+v, want %+v", got, want)
	}
	st.Datagrams = nil
	want.rateLimited, want.datagramsDropped = 0, 0
	if got := countsOf(st); got != want {
		t.Errorf("without datagrams: countsOf %+v, want %+v", got, want)
	}
}

func TestOwnedStatusHasSharedMemoryReady(t *testing.T) {
	st := v1alpha1.ExternalConnectorStatus{Conditions: []metav1.Condition{
		{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReplicasReady},
		sharedMemoryReady(1, []podStore{{"a", &enginev1.SharedMemory{State: enginev1.SharedMemory_READY, Store: "redis://r"}}}),
	}}
	fields, err := ownedStatus(&st)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(fields["conditions"])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"type":"SharedMemoryReady"`) || strings.Contains(string(b), `"type":"Ready"`) {
		t.Errorf("conditions applied: %s", b)
	}
}
