package rules

import (
	"regexp"
	"strings"
	"testing"
)

// FuzzRegexp: every expression RE2 compiles compiles with Python's `$` too (the rewritten
// expression is printed and compiled again), and on a text without a final newline both
// find the same match.
func FuzzRegexp(f *testing.F) {
	for _, s := range []string{`^PING$`, `(?i)a$|b\z`, `(?m)^x$`, `(?P<n>a+)$`, `[$]\$`, `(?s:.$)`, `(?U)a*?$`, `\b$`, `x{2,5}$`, `(?i:ß)$`} {
		f.Add(s, "PING")
	}
	f.Add(`0*$`, "01110\n\n")
	f.Fuzz(func(t *testing.T, expr, text string) {
		want, err := regexp.Compile(expr)
		if err != nil {
			return
		}
		re, err := compileRegex(expr)
		if err != nil {
			t.Fatalf("%q: %v", expr, err)
		}
		text = strings.TrimRight(text, "\n")
		if got, w := re.FindStringSubmatch(text), want.FindStringSubmatch(text); len(got) != len(w) || strings.Join(got, "\x00") != strings.Join(w, "\x00") {
			t.Fatalf("%q on %q: %q, RE2 %q", expr, text, got, w)
		}
	})
}
