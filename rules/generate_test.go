package rules_test

import (
	"strings"
	"testing"

	"github.com/parley-dev/parley/rules/value"
)

// Generated floats are rounded to 2 decimals, as Lope's are.
func TestGeneratedFloatsHaveTwoDecimals(t *testing.T) {
	prog, errs := compileYAML(t, `
operation: {port: 1}
memory: {connection: [{name: f, type: float, generate: {min: "0.1", max: "0.9"}}]}`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for range 2000 {
		v := prog.Connection[0].Initial()
		s := v.String()
		if _, frac, _ := strings.Cut(s, "."); v.Kind() != value.Float || len(frac) > 2 || v.AsFloat() < 0.1 || v.AsFloat() > 0.9 {
			t.Fatalf("generated %s: want a float in [0.1, 0.9] with at most 2 decimals", s)
		}
	}
}

// lopeSymbols are the 22 symbols Lope's *_and_symbols charsets add to letters and digits.
const lopeSymbols = "/?+-*=:[]^@#$%&()_!<>|"

func TestSymbolsCharsetsAreLopes(t *testing.T) {
	prog, errs := compileYAML(t, `
operation: {port: 1}
memory:
  connection:
  - {name: mixed, generate: {length: 4096, charset: SymbolsMixed}}
  - {name: lower, generate: {length: 4096, charset: SymbolsLower}}
  - {name: upper, generate: {length: 4096, charset: SymbolsUpper}}`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	letters := map[string]string{
		"mixed": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
		"lower": "abcdefghijklmnopqrstuvwxyz", "upper": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
	}
	for _, v := range prog.Connection {
		want := "0123456789" + letters[v.Name] + lopeSymbols
		got := v.Initial().AsString()
		for _, r := range got {
			if !strings.ContainsRune(want, r) {
				t.Fatalf("%s: %q is not in Lope's set %q", v.Name, r, want)
			}
		}
		// 4096 draws from at most 84 characters: every one shows up.
		for _, r := range want {
			if !strings.ContainsRune(got, r) {
				t.Errorf("%s: %q never drawn", v.Name, r)
			}
		}
	}
}

// A generated session id never holds the separator or endValue, which would cut it or move
// the key when the peer sends it back.
func TestGeneratedSessionIDsAvoidSeparatorAndEndValue(t *testing.T) {
	for _, tc := range []struct{ session, sep, end string }{
		{`{enabled: true, key: sid, endValue: "&", generate: {length: 256, charset: SymbolsMixed}}`, "=", "&"},
		{`{enabled: true, key: sid, separator: ":", endValue: "@@", generate: {length: 256, charset: SymbolsUpper}}`, ":", "@@"},
		{`{enabled: true, key: sid, separator: "", endValue: "=", generate: {length: 256, charset: SymbolsLower}}`, "", "="},
	} {
		prog, errs := compileYAML(t, `
operation: {port: 1, session: `+tc.session+`}
conversation: {rules: [{id: 1, mode: Sync, regex: x, sessionUpdate: {generate: true}}]}`)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		for _, id := range []string{prog.Session.NewID(), prog.Rules[0].SessionUpdate.NewID()} {
			if len(id) != 256 || (tc.sep != "" && strings.Contains(id, tc.sep)) || strings.Contains(id, tc.end) {
				t.Errorf("session %s: generated id of %d characters holds %q or %q", tc.session, len(id), tc.sep, tc.end)
			}
		}
	}
}
