package lope

import (
	"regexp"
	"strings"
	"testing"

	"github.com/parley-dev/parley/api/v1alpha1"
)

func TestTranslateRegex(t *testing.T) {
	for _, tc := range []struct {
		in   string
		use  regexUse
		want string // "" = refused
		why  string // part of the refusal
	}{
		{`^PING$`, matchUse, `^PING\n?\z`, ""},
		{`a$|b$`, matchUse, `a\n?\z|b\n?\z`, ""},
		{`(?m)^a$`, matchUse, `(?m)^a$`, ""},
		{`[$]x\$`, matchUse, `[$]x\$`, ""},
		{`end\Z`, matchUse, `end\z`, ""},
		{`\u00e9\U0001F600`, matchUse, `\x{00e9}\x{0001F600}`, ""},
		{`[\b]`, matchUse, `[\x08]`, ""},
		{`a{,3}`, matchUse, `a{0,3}`, ""},
		{`(?#a comment)x`, matchUse, `x`, ""},
		{`(?a)\w+`, matchUse, `\w+`, ""},
		{`(?ai)x`, matchUse, `(?i)x`, ""},
		{`(?u:x)`, matchUse, `(?:x)`, ""},
		{`(?P<user>\w+)`, matchUse, `(?P<user>\w+)`, ""},
		{`[]a]`, matchUse, `[]a]`, ""},
		{`(?<=USER )\w+`, matchUse, `(?:USER )\w+`, ""},
		{`\w+(?=;)`, matchUse, `\w+(?:;)`, ""},
		{`(?<=a)b(?=c)`, matchUse, `(?:a)b(?:c)`, ""},
		{`(?<=USER )\w+`, captureUse, `(?:USER )(\w+)`, ""},
		{`(?<=(a|b)=)\d+(?=;)`, captureUse, `(?:(?:a|b)=)(\d+)(?:;)`, ""},
		{`user=(\w+)`, captureUse, `(user=(\w+))`, ""},
		{`\d+$`, captureUse, `(\d+)(?:\n?\z)`, ""},
		{`\d+`, captureUse, `\d+`, ""},
		{`(?i)(?<=user=)\w+`, captureUse, `(?i)(?:user=)(\w+)`, ""},
		{`(?i)(?<=user=)\w+`, matchUse, `(?i)(?:user=)\w+`, ""},
		{`(?<=a)b`, valueUse, "", "lookarounds"},
		{`^(?!admin)`, matchUse, "", "lookarounds"},
		{`(?<=x)a|b`, matchUse, "", "lookarounds"},
		{`(\w)\1`, matchUse, "", "backreferences"},
		{`(?P<x>a)(?P=x)`, matchUse, "", "backreferences"},
		{`(?>a)`, matchUse, "", "atomic"},
		{`a*+`, matchUse, "", "possessive"},
		{`(?(1)a|b)`, matchUse, "", "conditional"},
		{`(?x) a b`, matchUse, "", "verbose"},
		{`a{2000}`, matchUse, "", "1000"},
	} {
		got, _, err := translateRegex(tc.in, tc.use)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%q (use %d): accepted as %q", tc.in, tc.use, got)
		case tc.want == "" && !strings.Contains(err.Error(), tc.why):
			t.Errorf("%q: %v, want it to mention %q", tc.in, err, tc.why)
		case tc.want != "" && (err != nil || got != tc.want):
			t.Errorf("%q (use %d) = %q, %v; want %q", tc.in, tc.use, got, err, tc.want)
		}
	}
}

// TestTranslatedRegexesKeepMeaning runs Python's semantics (written out by hand) against
// the translations on sample inputs.
func TestTranslatedRegexesKeepMeaning(t *testing.T) {
	for _, tc := range []struct {
		python string
		use    regexUse
		input  string
		match  bool
		value  string // for captures: what Lope stores (Python's whole match)
	}{
		{`^PING$`, matchUse, "PING\n", true, ""},
		{`^PING$`, matchUse, "PING\r\n", false, ""},
		{`^PING$`, matchUse, "PING\n\n", false, ""},
		{`(?<=USER )\w+`, captureUse, "USER admin\n", true, "admin"},
		{`\d+(?=ms)`, captureUse, "took 42ms", true, "42"},
		{`user=(\w+)`, captureUse, "user=bob;", true, "user=bob"},
		{`\w+$`, captureUse, "last word\n", true, "word"},
	} {
		expr, _, err := translateRegex(tc.python, tc.use)
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(expr)
		m := re.FindStringSubmatch(tc.input)
		if (m != nil) != tc.match {
			t.Errorf("%q on %q: match %v", tc.python, tc.input, m != nil)
			continue
		}
		if tc.use == captureUse {
			// Parley stores group 1 when there is one, else the whole match.
			got := m[0]
			if re.NumSubexp() > 0 {
				got = m[1]
			}
			if got != tc.value {
				t.Errorf("%q on %q stores %q, Lope stored %q", tc.python, tc.input, got, tc.value)
			}
		}
	}
}

func TestPythonReplacement(t *testing.T) {
	for in, want := range map[string]string{
		`got \1!`:            "got ${1}!",
		`\g<1>-\g<name>`:     "${1}-${name}",
		`\12`:                "${12}",
		`$5 and \\ and \n`:   "$$5 and \\ and \n",
		`keep \& and \g`:     `keep \& and \g`,
		`plain`:              "plain",
		`tab\there\0`:        "tab\there\x00",
		`\g<0> is the whole`: "${0} is the whole",
	} {
		if got := pythonReplacement(in); got != want {
			t.Errorf("pythonReplacement(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		typ     v1alpha1.VariableType
		in, out string
		ok      bool
	}{
		// Lope: true only for the text true, in any case.
		{v1alpha1.TypeBool, "yes", "false", true},
		{v1alpha1.TypeBool, "Off", "false", true},
		{v1alpha1.TypeBool, "True", "true", true},
		{v1alpha1.TypeBool, "TRUE", "true", true},
		{v1alpha1.TypeBool, "1", "false", true},
		{v1alpha1.TypeBool, "maybe", "false", true},
		{v1alpha1.TypeInt, "0x1F", "31", true},
		{v1alpha1.TypeInt, "1_000", "1000", true},
		{v1alpha1.TypeInt, "017", "15", true},
		{v1alpha1.TypeInt, "-0b101", "-5", true},
		{v1alpha1.TypeInt, "3.5", "", false},
		{v1alpha1.TypeFloat, "1.50", "1.50", true},
		{v1alpha1.TypeFloat, "-.inf", "-inf", true},
		{v1alpha1.TypeFloat, "2", "2", true},
		{v1alpha1.TypeFloat, "x", "", false},
		{v1alpha1.TypeString, " as is ", " as is ", true},
	} {
		got, ok := normalize(tc.typ, tc.in)
		if ok != tc.ok || (ok && got != tc.out) {
			t.Errorf("normalize(%s, %q) = %q, %v; want %q, %v", tc.typ, tc.in, got, ok, tc.out, tc.ok)
		}
	}
}
