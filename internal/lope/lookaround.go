package lope

import (
	"regexp"
	"strings"
)

// The lookarounds Lope rules use most sit at the edges of a regex, to isolate a value:
// (?<=USER )\w+. RE2 has no lookarounds, but at the edges it does not need them. This file
// finds the top-level structure of a regex well enough to rewrite those.

// edgeRewrite handles the lookarounds RE2 can do without: a positive lookbehind at the very
// start and a positive lookahead at the very end (and, for captures, a final `$`). For a
// match they become plain groups (a rule fires on the same inputs); for a capture the part
// between becomes group 1, which Parley stores, and which is what Lope stored as the whole
// match. A capture regex with groups of its own is wrapped whole, for the same reason.
func edgeRewrite(s string, use regexUse) (string, string) {
	items, alternation := topLevel(s)
	var lead, prefix, suffix string
	start, end := 0, len(s)
	// Inline flags first, as in (?i)(?<=user=)\w+, apply to everything: kept in front.
	if !alternation && len(items) > 1 && leadingFlags.MatchString(s[items[0].start:items[0].end]) {
		lead, start = s[:items[0].end], items[0].end
		items = items[1:]
	}
	if !alternation && len(items) > 0 {
		if first := items[0]; isGroup(s, first, "(?<=") {
			prefix = s[first.start+4 : first.end-1]
			start = first.end
			items = items[1:]
		}
	}
	lookahead := false
	if !alternation && len(items) > 0 {
		last := items[len(items)-1]
		switch {
		case isGroup(s, last, "(?="):
			suffix, lookahead = s[last.start+3:last.end-1], true
			end = last.start
		case use == captureUse && s[last.start:last.end] == "$" && !multilineFlag.MatchString(s):
			// Python's $ also matches before a final newline.
			suffix = `\n?\z`
			end = last.start
		}
	}
	if prefix == "" && suffix == "" {
		if use == captureUse && hasCapturingGroup(s) {
			return "(" + s + ")", captureWrapNote
		}
		return s, ""
	}
	body := s[start:end]
	var b strings.Builder
	b.WriteString(lead)
	if prefix != "" {
		b.WriteString("(?:" + nonCapturing(prefix) + ")")
	}
	if use == captureUse {
		b.WriteString("(" + body + ")")
	} else {
		b.WriteString(body)
	}
	if suffix != "" {
		b.WriteString("(?:" + suffix + ")")
	}
	switch {
	case use != captureUse:
		return b.String(), "lookarounds at the edges rewritten as plain groups for RE2: the rule fires on the same inputs"
	case prefix == "" && !lookahead:
		// Only a final $ was rewritten: the same value is stored.
		return b.String(), ""
	}
	return b.String(), "lookarounds rewritten for RE2: the text between them is now group 1, which Parley stores (Lope stored the whole match, the same text)"
}

var leadingFlags = regexp.MustCompile(`^\(\?[a-zA-Z-]+\)$`)

// isGroup says whether it is exactly one group (no quantifier) opening with open.
func isGroup(s string, it item, open string) bool {
	return strings.HasPrefix(s[it.start:], open) && groupEnd(s, it.start) == it.end
}

const captureWrapNote = "wrapped in a group: Lope stores the whole match, Parley stores group 1 when a regex has groups (remove the outer group to store your first group instead)"

// item is a top-level element of a regex: a group, a class, an escape or a character with
// its quantifier.
type item struct{ start, end int }

// topLevel splits s into top-level items and says whether it has a top-level alternation.
func topLevel(s string) ([]item, bool) {
	var items []item
	alternation := false
	for i := 0; i < len(s); {
		start := i
		switch s[i] {
		case '|':
			alternation = true
			i++
			continue
		case '\\':
			i += 2
		case '[':
			i = classEnd(s, i)
		case '(':
			i = groupEnd(s, i)
		default:
			i++
		}
		// A quantifier belongs to what it follows.
		for i < len(s) && strings.IndexByte("*+?", s[i]) >= 0 {
			i++
		}
		if i < len(s) && s[i] == '{' {
			if j := strings.IndexByte(s[i:], '}'); j > 0 {
				i += j + 1
			}
		}
		if i > len(s) {
			i = len(s)
		}
		items = append(items, item{start, i})
	}
	return items, alternation
}

// classEnd returns the index just past the character class opening at i.
func classEnd(s string, i int) int {
	j := i + 1
	if j < len(s) && s[j] == '^' {
		j++
	}
	if j < len(s) && s[j] == ']' {
		j++
	}
	for j < len(s) {
		switch s[j] {
		case '\\':
			j += 2
			continue
		case ']':
			return j + 1
		}
		j++
	}
	return len(s)
}

// groupEnd returns the index just past the group opening at i.
func groupEnd(s string, i int) int {
	depth := 0
	for j := i; j < len(s); {
		switch s[j] {
		case '\\':
			j += 2
			continue
		case '[':
			j = classEnd(s, j)
			continue
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return j + 1
			}
		}
		j++
	}
	return len(s)
}

// groupOpen finds the groups of s that capture, calling f with the index of their '(' and
// the length of the opening ("(" or "(?P<name>" ...).
func groupOpen(s string, f func(at, n int)) {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '[':
			i = classEnd(s, i) - 1
		case '(':
			rest := s[i+1:]
			switch {
			case !strings.HasPrefix(rest, "?"):
				f(i, 1)
			case strings.HasPrefix(rest, "?P<"), strings.HasPrefix(rest, "?<") && !strings.HasPrefix(rest, "?<=") && !strings.HasPrefix(rest, "?<!"):
				if j := strings.IndexByte(rest, '>'); j > 0 {
					f(i, j+2)
				}
			}
		}
	}
}

func hasCapturingGroup(s string) bool {
	found := false
	groupOpen(s, func(int, int) { found = true })
	return found
}

// nonCapturing turns the capturing groups of s into non-capturing ones, so that they do
// not take group 1 when s is put in front of it.
func nonCapturing(s string) string {
	var b strings.Builder
	last := 0
	groupOpen(s, func(at, n int) {
		b.WriteString(s[last:at])
		b.WriteString("(?:")
		last = at + n
	})
	b.WriteString(s[last:])
	return b.String()
}
