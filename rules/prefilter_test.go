package rules

import (
	"fmt"
	"math/rand/v2"
	"regexp/syntax"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// withPrefilterFrom makes programs get a prefilter from n regexes on, for one test.
func withPrefilterFrom(t testing.TB, n int) {
	old := minPrefiltered
	minPrefiltered = n
	t.Cleanup(func() { minPrefiltered = old })
}

func TestRequiredLiterals(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string // nil: none, the regex always runs
	}{
		{`PING`, []string{"PING"}},
		{`^PING\r?\n$`, []string{"PING"}},
		{`(?i)ping`, []string{"ping"}},
		{`(?i)kiss`, []string{"i"}}, // k and s fold to the Kelvin sign and the long s
		{`(?i)HELLO`, []string{"hello"}},
		{`USER (\w+) PASS`, []string{"USER "}}, // the first of the longest

		{`GET|POST|PUT`, []string{"GET", "OST", "UT"}}, // parsed as GET|P(?:OST|UT)
		{`(?:AB)+`, []string{"AB"}},
		{`(?:AB){2,}`, []string{"AB"}},
		{`x*`, nil},
		{`(?:AB)?`, nil},
		{`(?:AB){0,3}`, nil},
		{`GET|.*`, nil},
		{`\d+`, nil},
		{`(?i)é`, nil},
		{`é`, []string{"é"}},
		{"a\uFFFDbc", []string{"bc"}},
		{`^$`, nil},
	} {
		re, err := compileRegex(tc.expr)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		if re.prefilterable {
			got = re.literals
		}
		if strings.HasPrefix(tc.expr, "(?i)") {
			for i := range got {
				got[i] = strings.ToLower(got[i])
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: required literals %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// The prefilter does its job: of 1000 rules with distinct words, an input naming one
// leaves that rule's regex alone to run.
func TestPrefilterLeavesOnlyTheRegexesThatCanMatch(t *testing.T) {
	var slots []*Regexp
	for i := range 1000 {
		re, err := compileRegex(fmt.Sprintf(`CMD%04d\b`, i))
		if err != nil {
			t.Fatal(err)
		}
		slots = append(slots, re)
	}
	f := newPrefilter(slots)
	if f == nil {
		t.Fatal("no prefilter for 1000 rules")
	}
	var c Candidates
	f.Scan("cmd0999 and CMD0042\r\n", &c)
	var got []int
	for i := c.Next(0); i < len(slots); i = c.Next(i + 1) {
		got = append(got, i)
	}
	if !slices.Equal(got, []int{42, 999}) {
		t.Errorf("candidates %v, want [42 999] (case folded for the scan, not for the regex)", got)
	}
}

// Too few regexes with literals: no prefilter, every slot is a candidate.
func TestNoPrefilterForFewRules(t *testing.T) {
	re, _ := compileRegex("PING")
	if f := newPrefilter([]*Regexp{re}); f != nil {
		t.Fatal("a prefilter for one rule")
	}
	var c Candidates
	(*Prefilter)(nil).Scan("x", &c)
	if !c.Has(0) || c.Next(3) != 3 {
		t.Error("without a prefilter every slot is a candidate")
	}
}

// Pieces the random regexes and inputs are made of: a small alphabet, so that literals
// often occur; case pairs; runes whose case folds outside ASCII; non-ASCII and invalid
// UTF-8; line ends for Python's `$`.
var (
	propAtoms = []string{
		"a", "b", "ab", "AB", "ba", "k", "K", "s", "S", "st", "é", "É", "\u212a", "\u017f", "\\x{FFFD}",
		".", "\\d", "\\w", "\\s", "\\b", "^", "$", "\\z", "\\A", "[ab]", "[^a]", "(?i:ab)", "(?i:k)", "(?i:s)",
		"(?i:é)", "x", "xy", "\\n", "\\r", "ping", "PING",
	}
	propInputs = []string{"a", "b", "A", "B", "k", "K", "s", "S", "t", "é", "É", "\u212a", "\u017f", "\xff", "\xef\xbf\xbd",
		"x", "y", "Y", "\n", "\r", " ", "ping", "PING", "1"}
)

// randRegex makes a random regex of depth at most d.
func randRegex(r *rand.Rand, d int) string {
	if d == 0 || r.IntN(3) == 0 {
		return propAtoms[r.IntN(len(propAtoms))]
	}
	switch r.IntN(8) {
	case 0:
		return randRegex(r, d-1) + "|" + randRegex(r, d-1)
	case 1:
		return "(" + randRegex(r, d-1) + ")*"
	case 2:
		return "(" + randRegex(r, d-1) + ")+"
	case 3:
		return "(?:" + randRegex(r, d-1) + ")?"
	case 4:
		return "(?:" + randRegex(r, d-1) + fmt.Sprintf("){%d,%d}", r.IntN(2), 2+r.IntN(2))
	case 5:
		return "(?i:" + randRegex(r, d-1) + ")"
	default:
		return randRegex(r, d-1) + randRegex(r, d-1)
	}
}

func randInput(r *rand.Rand) string {
	var b strings.Builder
	for range r.IntN(12) {
		b.WriteString(propInputs[r.IntN(len(propInputs))])
	}
	return b.String()
}

// matchAll is plain evaluation: the slots whose regexes match, in order (nil always runs:
// it stands for a group without a regex, and is listed).
func matchAll(slots []*Regexp, text string) []int {
	var out []int
	for i, re := range slots {
		if re == nil || re.MatchString(text) {
			out = append(out, i)
		}
	}
	return out
}

// matchFiltered is the same with the prefilter deciding which regexes run.
func matchFiltered(f *Prefilter, slots []*Regexp, text string) []int {
	var c Candidates
	f.Scan(text, &c)
	var out []int
	for i := c.Next(0); i < len(slots); i = c.Next(i + 1) {
		if re := slots[i]; re == nil || re.MatchString(text) {
			out = append(out, i)
		}
	}
	return out
}

// Property: over random regex sets and random inputs, the regexes that match, and their
// order, are the same with the prefilter as when every regex runs.
func TestPrefilterFiresAsEveryRegex(t *testing.T) {
	withPrefilterFrom(t, 1)
	r := rand.New(rand.NewPCG(17, 2026))
	sets, filtered := 300, 0
	if testing.Short() {
		sets = 100
	}
	for range sets {
		var slots []*Regexp
		var exprs []string
		for range 1 + r.IntN(40) {
			expr := randRegex(r, 3)
			re, err := compileRegex(expr)
			if err != nil {
				continue // an expression RE2 refuses (a repeat of an empty-width assertion)
			}
			if r.IntN(20) == 0 {
				re, expr = nil, "<none>"
			}
			slots = append(slots, re)
			exprs = append(exprs, expr)
		}
		f := newPrefilter(slots)
		if f != nil {
			filtered++
		}
		for range 200 {
			text := randInput(r)
			if want, got := matchAll(slots, text), matchFiltered(f, slots, text); !slices.Equal(got, want) {
				t.Fatalf("input %q over %q:\nprefiltered %v\nevery regex %v", text, exprs, got, want)
			}
		}
	}
	if filtered < sets/2 {
		t.Errorf("only %d of %d sets got a prefilter: the property was hardly tested", filtered, sets)
	}
}

// The same property through Compile: ungrouped rules, groups with and without regexes, and
// the binary encoding (whose inputs and regexes are decoded to runes up to U+00FF). The
// regexes are visited as the runtime visits them (connector's detect), by slot.
func TestPrefilterSlotsFollowTheProgram(t *testing.T) {
	withPrefilterFrom(t, 1)
	r := rand.New(rand.NewPCG(5, 7))
	for _, enc := range []v1alpha1.Encoding{"", "binary"} {
		for range 40 {
			var spec strings.Builder
			fmt.Fprintf(&spec, "operation: {port: 1, encoding: %q}\nconversation:\n  rules:\n", enc)
			id := 1
			ruleList := func(indent string) {
				for range r.IntN(8) {
					fmt.Fprintf(&spec, "%s- {id: %d, mode: Sync, regex: %q}\n", indent, id, randRegexCompiling(r))
					id++
				}
			}
			ruleList("  ")
			spec.WriteString("  groups:\n")
			for g := range 1 + r.IntN(3) {
				fmt.Fprintf(&spec, "  - id: g%d\n", g)
				if r.IntN(3) > 0 {
					fmt.Fprintf(&spec, "    regex: %q\n", randRegexCompiling(r))
				}
				spec.WriteString("    rules:\n")
				ruleList("    ")
			}
			var s v1alpha1.ConversationRulesSpec
			if err := yaml.UnmarshalStrict([]byte(spec.String()), &s); err != nil {
				t.Fatalf("%v\n%s", err, spec.String())
			}
			p, errs := Compile("prop", 1, &s)
			if len(errs) > 0 {
				t.Fatalf("%v\n%s", errs.ToAggregate(), spec.String())
			}
			for range 100 {
				raw := []byte(randInput(r))
				text := p.Codec.Decode(raw)
				want := detectRegexes(p, text, nil)
				var c Candidates
				p.Prefilter.Scan(text, &c)
				if got := detectRegexes(p, text, &c); !slices.Equal(got, want) {
					t.Fatalf("input %q:\nprefiltered %v\nevery regex %v\n%s", text, got, want, spec.String())
				}
			}
		}
	}
}

func randRegexCompiling(r *rand.Rand) string {
	for {
		expr := randRegex(r, 3)
		if _, err := syntax.Parse(expr, syntax.Perl); err == nil {
			if _, err := compileRegex(expr); err == nil {
				return expr
			}
		}
	}
}

// detectRegexes is the runtime's detection without conditions: the ids of the rules whose
// regexes match, ungrouped first, then those of each group whose regex matches (or that
// has none); c nil runs every regex.
func detectRegexes(p *Program, text string, c *Candidates) []int32 {
	if c == nil {
		c = &Candidates{}
	}
	var out []int32
	for i := c.Next(0); i < len(p.Rules); i = c.Next(i + 1) {
		if p.Rules[i].Regex.MatchString(text) {
			out = append(out, p.Rules[i].ID)
		}
	}
	for _, g := range p.Groups {
		if g.Regex != nil && !(c.Has(g.Slot) && g.Regex.MatchString(text)) {
			continue
		}
		first := g.Slot + 1
		for i := c.Next(first); i < first+len(g.Rules); i = c.Next(i + 1) {
			if r := g.Rules[i-first]; r.Regex.MatchString(text) {
				out = append(out, r.ID)
			}
		}
	}
	return out
}

// FuzzPrefilter: for any regexes (one per line) and input, the prefilter leaves every regex
// that matches, in order.
func FuzzPrefilter(f *testing.F) {
	withPrefilterFrom(f, 1)
	for _, s := range [][2]string{
		{"PING\n(?i)quit\nUSER (\\w+)", "user bob\r\n"},
		{"(?i)kiss\nmiss$", "\u212aiss\n"},
		{"\\x{FFFD}ab\nGET|POST", "\xffab"},
		{"(?:ab)+c\nab*\n(?i:é)", "ÉABABc"},
		{"^$\n\\bx\\b", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, exprs, text string) {
		var slots []*Regexp
		for _, e := range strings.Split(exprs, "\n") {
			if re, err := compileRegex(e); err == nil {
				slots = append(slots, re)
			}
		}
		if want, got := matchAll(slots, text), matchFiltered(newPrefilter(slots), slots, text); !slices.Equal(got, want) {
			t.Fatalf("input %q over %q: prefiltered %v, every regex %v", text, exprs, got, want)
		}
	})
}

// BenchmarkPrefilter: finding the rules whose regexes match one input among 1000 rules with
// unanchored regexes (the input matches the last), with the prefilter and with every regex
// run, beside one rule.
func BenchmarkPrefilter(b *testing.B) {
	const text = "CMD0999 PING\r\n"
	mk := func(n int) []*Regexp {
		var slots []*Regexp
		for i := range n {
			re, err := compileRegex(fmt.Sprintf(`CMD%04d`, i+1000-n))
			if err != nil {
				b.Fatal(err)
			}
			slots = append(slots, re)
		}
		return slots
	}
	one, many := mk(1), mk(1000)
	f := newPrefilter(many)
	if f == nil {
		b.Fatal("no prefilter")
	}
	run := func(b *testing.B, f *Prefilter, slots []*Regexp) {
		var c Candidates
		b.ReportAllocs()
		for b.Loop() {
			f.Scan(text, &c)
			n := 0
			for i := c.Next(0); i < len(slots); i = c.Next(i + 1) {
				if slots[i].MatchString(text) {
					n++
				}
			}
			if n != 1 {
				b.Fatalf("%d matches", n)
			}
		}
	}
	b.Run("rules=1", func(b *testing.B) { run(b, nil, one) })
	b.Run("rules=1000/prefilter", func(b *testing.B) { run(b, f, many) })
	b.Run("rules=1000/every-regex", func(b *testing.B) { run(b, nil, many) })
}
