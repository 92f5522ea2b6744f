package engine

import (
	"testing"

	"github.com/parley-dev/parley/api/v1alpha1"
)

func TestAlertNote(t *testing.T) {
	rec := &v1alpha1.ActivityRecord{
		Type:       v1alpha1.ActivityInput,
		Connection: &v1alpha1.ConnectionRef{ID: "c-000007", Peer: "203.0.113.9:51122"},
		Rules:      &v1alpha1.RulesRecord{Executed: []int32{3}},
		Input:      &v1alpha1.InputRecord{Text: "AUTH admin admin2 hunter2\r\n"},
		Captures: []v1alpha1.CaptureRecord{
			{Rule: 3, Variable: "user", Value: "admin"},
			{Rule: 3, Variable: "full", Value: "admin2"},
			{Rule: 3, Variable: "empty", Value: ""},
		},
	}
	for _, tc := range []struct {
		name   string
		redact bool
		want   string
	}{
		{"redacted: every captured value, the longest first", true,
			`Input from 203.0.113.9:51122 (c-000007), rules [3], input "AUTH *** *** hunter2\r\n" (pod p)`},
		{"as it came", false,
			`Input from 203.0.113.9:51122 (c-000007), rules [3], input "AUTH admin admin2 hunter2\r\n" (pod p)`},
	} {
		if got := alertNote(rec, "p", tc.redact); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}
