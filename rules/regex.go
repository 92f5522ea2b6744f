package rules

import (
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode/utf8"
)

// Regexp is a compiled rule, group or capture regex. It is RE2, except that `$` outside
// multi-line mode behaves as in Python and PCRE (Lope's rules are Python regexes): it
// matches at the end of the text or before a final "\n", so "^PING$" matches "PING\n".
// RE2's `$` matches only at the very end, and RE2 has no lookahead to say "before a final
// newline" without taking the newline into the match; so a regex holding such a `$` is also
// run on the text without its final "\n", and the leftmost of the two matches wins (the one
// on the whole text when both start at the same place). What a match and its groups hold is
// then what Python's would: the newline stays out of them. Only a pattern that goes on
// after `$` to match the final "\n" itself (`^PING$\n`) does not match as in Python.
type Regexp struct {
	re *regexp.Regexp
	// beforeNewline, set when the expression has such a `$`, is re with `\z` made
	// impossible (`$` stays the end of the text): it runs on the text without its final
	// "\n", where the end of the text is the place before that newline.
	beforeNewline *regexp.Regexp
	// literals are required literals of every match (prefilter.go), when prefilterable.
	literals      []string
	prefilterable bool
	// literal, when whole is set, is the whole expression: a case-sensitive string
	// (`PING`), which matches where the text holds its bytes. MatchString then looks for
	// them rather than run the regexp, whose search (for the literal, then a backtracking
	// match from there) costs ten times more on the short inputs of a conversation.
	literal string
	whole   bool
}

// compileRegex compiles expr as the rules' regexes are: RE2 syntax, Python's `$`.
func compileRegex(expr string) (*Regexp, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, err
	}
	out := &Regexp{re: re}
	tree, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return out, nil
	}
	// Before neverAtEnd rewrites the tree: a rewritten `\z` only matches less.
	out.literals, out.prefilterable = requiredLiterals(tree)
	out.literal, out.whole = wholeLiteral(tree)
	if !endsAtDollar(tree) {
		return out, nil
	}
	neverAtEnd(tree)
	// Printing a parsed regex gives an equivalent expression, groups numbered alike.
	if out.beforeNewline, err = regexp.Compile(tree.String()); err != nil {
		return nil, err
	}
	return out, nil
}

// wholeLiteral returns re's string when re is nothing but a case-sensitive literal. A
// literal holding U+FFFD is not one: RE2 matches that rune against any invalid UTF-8 byte
// of the text, which its bytes are not. Every other rune matches exactly its own UTF-8
// bytes, wherever they appear: a valid sequence cannot start inside another, nor after
// an invalid byte other than at that byte's next one, where RE2 looks too.
func wholeLiteral(re *syntax.Regexp) (string, bool) {
	if re.Op != syntax.OpLiteral || re.Flags&syntax.FoldCase != 0 ||
		slices.ContainsFunc(re.Rune, func(r rune) bool { return r == utf8.RuneError || !utf8.ValidRune(r) }) {
		return "", false
	}
	return string(re.Rune), true
}

// endsAtDollar reports whether re holds a `$` of single-line mode.
func endsAtDollar(re *syntax.Regexp) bool {
	if re.Op == syntax.OpEndText && re.Flags&syntax.WasDollar != 0 {
		return true
	}
	for _, sub := range re.Sub {
		if endsAtDollar(sub) {
			return true
		}
	}
	return false
}

// neverAtEnd turns every `\z` of re into a pattern that never matches, leaving `$`: on the
// text without its final newline, `\z` would wrongly match before that newline.
func neverAtEnd(re *syntax.Regexp) {
	if re.Op == syntax.OpEndText && re.Flags&syntax.WasDollar == 0 {
		*re = syntax.Regexp{Op: syntax.OpNoMatch, Flags: re.Flags}
		return
	}
	for _, sub := range re.Sub {
		neverAtEnd(sub)
	}
}

// String returns the expression as written.
func (r *Regexp) String() string { return r.re.String() }

// MatchString reports whether r matches somewhere in s.
func (r *Regexp) MatchString(s string) bool {
	if r.whole {
		return strings.Contains(s, r.literal)
	}
	if r.re.MatchString(s) {
		return true
	}
	if t, ok := r.withoutFinalNewline(s); ok {
		return r.beforeNewline.MatchString(t)
	}
	return false
}

// FindStringSubmatch returns the leftmost match of r in s and its groups (a group that
// took no part is ""), or nil.
func (r *Regexp) FindStringSubmatch(s string) []string {
	loc := r.re.FindStringSubmatchIndex(s)
	if t, ok := r.withoutFinalNewline(s); ok {
		if alt := r.beforeNewline.FindStringSubmatchIndex(t); alt != nil && (loc == nil || alt[0] < loc[0]) {
			loc = alt
		}
	}
	if loc == nil {
		return nil
	}
	out := make([]string, len(loc)/2)
	for i := range out {
		if loc[2*i] >= 0 {
			out[i] = s[loc[2*i]:loc[2*i+1]]
		}
	}
	return out
}

// withoutFinalNewline is s without its final "\n", when r has a `$` that may match there.
func (r *Regexp) withoutFinalNewline(s string) (string, bool) {
	if r.beforeNewline == nil || !strings.HasSuffix(s, "\n") {
		return "", false
	}
	return s[:len(s)-1], true
}
