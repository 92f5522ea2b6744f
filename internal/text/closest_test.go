package text

import "testing"

func TestClosest(t *testing.T) {
	ops := []string{"NBR_SUM", "NBR_SUBTRACT", "STR_CONCAT"}
	fields := []string{"port", "interactionTimeout", "maxInputSize"}
	for _, tc := range []struct {
		name       string
		candidates []string
		want       string
	}{
		{"NBR_SUMM", ops, "NBR_SUM"}, // one letter too many
		{"nbr_sum", ops, "NBR_SUM"},  // case and underscores do not count
		{"NBR_ADD", ops, ""},         // three edits: not a likely typo
		{"prot", fields, "port"},     // a swap of neighbours is one edit
		{"interaction_timeout", fields, "interactionTimeout"},
		{"ip", fields, ""}, // short names need an exact match
		{"maxInputSizes", fields, "maxInputSize"},
	} {
		if got := Closest(tc.name, tc.candidates); got != tc.want {
			t.Errorf("Closest(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}
