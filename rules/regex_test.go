package rules_test

import (
	"testing"
)

// `$` outside multi-line mode matches at the end or before a final "\n", as in Python and
// PCRE (Lope's rules are Python regexes); what a match or a group holds is as in Python.
func TestDollarMatchesBeforeAFinalNewline(t *testing.T) {
	prog, errs := compileYAML(t, `
operation: {port: 1}
memory: {connection: [{name: user}, {name: word}, {name: line}, {name: end}]}
conversation:
  rules:
  - id: 1
    mode: Sync
    regex: "^PING$"
    captures:
    - {regex: "^USER (\\w+)$", variable: user}
    - {regex: "\\w+$", variable: word}
    - {regex: "(?m)^\\w+$", variable: line}
    - {regex: "x\\z", variable: end}
  groups:
  - {id: g, regex: "^ADMIN$", rules: [{id: 2, mode: Sync, regex: "(?i)admin$"}]}
`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	match := []struct {
		what string
		re   interface{ MatchString(string) bool }
		text string
		want bool
	}{
		{"rule", prog.Rules[0].Regex, "PING\n", true},
		{"rule", prog.Rules[0].Regex, "PING", true},
		{"rule", prog.Rules[0].Regex, "PING\r\n", false}, // \r is not a newline
		{"rule", prog.Rules[0].Regex, "PING\n\n", false}, // only the final one
		{"rule", prog.Rules[0].Regex, "PING\nX", false},
		{"group", prog.Groups[0].Regex, "ADMIN\n", true},
		{"group rule", prog.Groups[0].Rules[0].Regex, "ADMIN\n", true},
		{"\\z stays the very end", prog.Rules[0].Captures[3].Regex, "x\n", false},
	}
	for _, m := range match {
		if got := m.re.MatchString(m.text); got != m.want {
			t.Errorf("%s regex on %q: %v, want %v", m.what, m.text, got, m.want)
		}
	}
	find := []struct {
		capture int
		text    string
		want    []string
	}{
		{0, "USER bob\n", []string{"USER bob", "bob"}},
		{0, "USER bob", []string{"USER bob", "bob"}},
		{1, "hello bob\n", []string{"bob"}}, // the whole match leaves the newline out
		{1, "ab\n", []string{"ab"}},
		{2, "one\ntwo\n", []string{"one"}}, // multi-line mode is unchanged
		{0, "USER bob\n\n", nil},
	}
	for _, f := range find {
		got := prog.Rules[0].Captures[f.capture].Regex.FindStringSubmatch(f.text)
		if len(got) != len(f.want) {
			t.Errorf("capture %d on %q: %q, want %q", f.capture, f.text, got, f.want)
			continue
		}
		for i := range got {
			if got[i] != f.want[i] {
				t.Errorf("capture %d on %q: %q, want %q", f.capture, f.text, got, f.want)
				break
			}
		}
	}
}
