package rules

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// FuzzRegexp: every expression RE2 compiles compiles with Python's `$` too (the rewritten
// expression is printed and compiled again), and on a text without a final newline both
// find the same match, and say alike whether there is one (a whole literal without RE2).
func FuzzRegexp(f *testing.F) {
	for _, s := range []string{`^PING$`, `(?i)a$|b\z`, `(?m)^x$`, `(?P<n>a+)$`, `[$]\$`, `(?s:.$)`, `(?U)a*?$`, `\b$`, `x{2,5}$`, `(?i:ß)$`} {
		f.Add(s, "PING")
	}
	f.Add(`0*$`, "01110\n\n")
	f.Add(`PING`, "xPINGx")
	f.Add(`é`, "\xc3\xc3\xa9")
	f.Add(`\x{2028}`, "\xe2\x80\xa8")
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
		if got, w := re.MatchString(text), want.MatchString(text); got != w {
			t.Fatalf("%q on %q: MatchString %v, RE2 %v (whole literal: %v)", expr, text, got, w, re.whole)
		}
	})
}

// A whole literal matches where RE2 would, without it: on texts of valid and invalid UTF-8,
// runes cut in the middle, NULs and the replacement character itself. Expressions that are
// not whole literals (folded case, U+FFFD, anything else) are left to RE2.
func TestWholeLiteralMatchesAsRE2(t *testing.T) {
	pieces := []string{"P", "I", "N", "G", "p", "a", "é", "\u212a", "\u2028", "\x00", "\r", "\n", "€", "😀", ".", "("}
	inputs := []string{"P", "I", "N", "G", "p", "a", "é", "\xc3", "\xa9", "\xe2\x82", "\xac", "€", "\xff", "\xef\xbf\xbd",
		"\u212a", "K", "\x00", "\r\n", "\xf0\x9f\x98", "\x80", "😀", "(", "x"}
	r := rand.New(rand.NewPCG(3, 14))
	whole := 0
	for range 3000 {
		var lit strings.Builder
		for range 1 + r.IntN(3) {
			lit.WriteString(pieces[r.IntN(len(pieces))])
		}
		expr := regexp.QuoteMeta(lit.String())
		switch r.IntN(6) {
		case 0:
			expr = "(?i)" + expr
		case 1:
			expr += `\x{FFFD}`
		case 2:
			expr = "(" + expr + ")"
		}
		re, err := compileRegex(expr)
		if err != nil {
			t.Fatalf("%q: %v", expr, err)
		}
		if re.whole {
			whole++
		}
		want := regexp.MustCompile(expr)
		for range 20 {
			var text strings.Builder
			for range r.IntN(10) {
				text.WriteString(inputs[r.IntN(len(inputs))])
			}
			if got, w := re.MatchString(text.String()), want.MatchString(text.String()); got != w {
				t.Fatalf("%q on %q: %v, RE2 %v (whole literal: %v)", expr, text.String(), got, w, re.whole)
			}
		}
	}
	if whole < 1000 {
		t.Errorf("only %d of 3000 expressions were whole literals: the fast path was hardly tested", whole)
	}
	for _, expr := range []string{"(?i)ping", `a\x{FFFD}`, "(PING)", "PING$", "^PING", "P.NG"} {
		if re, _ := compileRegex(expr); re.whole {
			t.Errorf("%q taken for a whole literal", expr)
		}
	}
}
