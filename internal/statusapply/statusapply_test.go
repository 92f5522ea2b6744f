package statusapply

import (
	"encoding/json"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestConditions(t *testing.T) {
	at := metav1.NewTime(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	conds := []metav1.Condition{
		{Type: "A", Status: metav1.ConditionTrue, Reason: "Yes", Message: "a", LastTransitionTime: at, ObservedGeneration: 2},
		{Type: "B", Status: metav1.ConditionFalse, Reason: "No", Message: "b", LastTransitionTime: at},
		{Type: "C", Status: metav1.ConditionUnknown, Reason: "Maybe", Message: "", LastTransitionTime: at},
	}
	for _, tc := range []struct {
		name  string
		types []string
		want  string
	}{
		{name: "none", want: `[]`},
		{name: "absent", types: []string{"D"}, want: `[]`},
		{name: "in the order asked", types: []string{"C", "A"}, want: `[` +
			`{"lastTransitionTime":"2025-01-02T03:04:05Z","message":"","reason":"Maybe","status":"Unknown","type":"C"},` +
			`{"lastTransitionTime":"2025-01-02T03:04:05Z","message":"a","observedGeneration":2,"reason":"Yes","status":"True","type":"A"}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Conditions(conds, tc.types...)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("got  %s\nwant %s", b, tc.want)
			}
		})
	}
}
