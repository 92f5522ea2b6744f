package rules

import (
	"math/bits"
	"regexp/syntax"
	"unicode"
	"unicode/utf8"
)

// The literal prefilter decides, in one pass over an input, which of a program's matching
// regexes (its rules' and groups') can match it at all, so that with many rules only a few
// regexes run. Every regex gets a set of literals, at least one of which is in every match
// it can make (its "required literals", taken from its syntax tree); one Aho–Corasick
// automaton finds all of them in the input at once. A regex none of whose literals is in the
// input cannot match and is skipped; a regex without required literals (`.*`, `\d+`,
// `^$`) always runs. Skipping is therefore never wrong: the rules that fire, and their
// order, are exactly those of running every regex (TestPrefilterFiresAsEveryRegex).
//
// Matching folds ASCII case on both sides, so one automaton serves case-sensitive and
// `(?i)` literals alike: a case-sensitive literal present in the input is present folded
// too, and a false hit only means its regex runs. A `(?i)` literal is cut at every rune
// whose case folds to a rune outside ASCII (k to the Kelvin sign, s to the long s, any
// non-ASCII letter), since byte folding cannot see those; the pieces are still required.
// Literals are cut at U+FFFD as well: RE2 matches it against any invalid UTF-8 byte, which
// is not those bytes.

// minPrefiltered is the number of regexes with required literals from which a program gets
// a prefilter: below it, running the regexes costs less than a pass of the automaton.
var minPrefiltered = 8

// maxLiterals bounds the literals kept for one regex (an alternation of many words); a
// regex over it has no required literals and always runs.
const maxLiterals = 64

// maxTable bounds the automaton's transition table (states × byte classes), 16 MiB of
// int32: rules beyond it run without a prefilter.
const maxTable = 4 << 20

// requiredLiterals returns literals at least one of which every match of re contains, and
// whether there are such literals.
func requiredLiterals(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		best := ""
		start := 0
		fold := re.Flags&syntax.FoldCase != 0
		for i, r := range re.Rune {
			if !literalRune(r, fold) {
				if piece := string(re.Rune[start:i]); len(piece) > len(best) {
					best = piece
				}
				start = i + 1
			}
		}
		if piece := string(re.Rune[start:]); len(piece) > len(best) {
			best = piece
		}
		return []string{best}, best != ""
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiterals(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredLiterals(re.Sub[0])
		}
	case syntax.OpConcat:
		var best []string
		for _, sub := range re.Sub {
			if lits, ok := requiredLiterals(sub); ok && betterLiterals(lits, best) {
				best = lits
			}
		}
		return best, best != nil
	case syntax.OpAlternate:
		var all []string
		for _, sub := range re.Sub {
			lits, ok := requiredLiterals(sub)
			if !ok || len(all)+len(lits) > maxLiterals {
				return nil, false
			}
			all = append(all, lits...)
		}
		return all, true
	}
	return nil, false
}

// literalRune says whether r can stand for itself in a literal the automaton looks for.
func literalRune(r rune, fold bool) bool {
	if r == utf8.RuneError {
		return false
	}
	if !fold {
		return true
	}
	if r >= utf8.RuneSelf {
		return false
	}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// betterLiterals prefers the set whose shortest literal is longest (rarer in inputs), then
// the smaller set.
func betterLiterals(a, b []string) bool {
	if b == nil {
		return true
	}
	sa, sb := shortest(a), shortest(b)
	return sa > sb || (sa == sb && len(a) < len(b))
}

func shortest(lits []string) int {
	n := -1
	for _, l := range lits {
		if n < 0 || len(l) < n {
			n = len(l)
		}
	}
	return n
}

// Prefilter finds which of a program's matching regexes can match an input. Their slots
// are the order detection visits them: the ungrouped rules (slot i is Program.Rules[i]),
// then each group's regex (Group.Slot) followed by its rules.
type Prefilter struct {
	// always has the slots to run whatever the input: no regex, or no required literals.
	always []uint64
	// class maps a folded input byte to its column in delta; 0 is every byte in no literal.
	class    [256]uint8
	nclasses int
	// delta is the automaton as a table: the next state is delta[state*nclasses+class].
	delta []int32
	// out lists, for each state, the slots whose literals end there (suffixes included).
	out [][]int32
}

// Candidates is what a Prefilter found in one input: the slots whose regexes may match.
// The zero value (no prefilter) has every slot a candidate. A conversation keeps one and
// reuses its storage from input to input.
type Candidates struct {
	bits []uint64
}

// Has says whether the regex at slot may match.
func (c *Candidates) Has(slot int) bool {
	return c.bits == nil || c.bits[slot>>6]&(1<<(slot&63)) != 0
}

// Next returns the first candidate slot from slot on, or a slot past every regex.
func (c *Candidates) Next(slot int) int {
	if c.bits == nil {
		return slot
	}
	w := slot >> 6
	if w >= len(c.bits) {
		return slot
	}
	if m := c.bits[w] >> (slot & 63); m != 0 {
		return slot + bits.TrailingZeros64(m)
	}
	for w++; w < len(c.bits); w++ {
		if c.bits[w] != 0 {
			return w<<6 + bits.TrailingZeros64(c.bits[w])
		}
	}
	return len(c.bits) << 6
}

// Scan marks in c the slots whose regexes may match text. On a nil Prefilter, every slot.
func (f *Prefilter) Scan(text string, c *Candidates) {
	if f == nil {
		c.bits = nil
		return
	}
	c.bits = append(c.bits[:0], f.always...)
	delta, out, n := f.delta, f.out, int32(f.nclasses)
	state := int32(0)
	for i := 0; i < len(text); i++ {
		state = delta[state*n+int32(f.class[foldByte(text[i])])]
		for _, slot := range out[state] {
			c.bits[slot>>6] |= 1 << (slot & 63)
		}
	}
}

func foldByte(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// newPrefilter builds the prefilter of the regexes in slot order (nil entries always
// run), or returns nil when too few regexes have required literals to be worth it, or the
// automaton would be too large.
func newPrefilter(slots []*Regexp) *Prefilter {
	f := &Prefilter{always: make([]uint64, (len(slots)+63)/64)}
	type pattern struct {
		lit  string
		slot int32
	}
	var patterns []pattern
	filtered := 0
	for i, re := range slots {
		if re == nil || !re.prefilterable {
			f.always[i>>6] |= 1 << (i & 63)
			continue
		}
		filtered++
		for _, l := range re.literals {
			patterns = append(patterns, pattern{lit: l, slot: int32(i)})
		}
	}
	if filtered < minPrefiltered {
		return nil
	}
	// Byte classes: one column per folded byte some literal holds.
	f.nclasses = 1
	for _, p := range patterns {
		for i := 0; i < len(p.lit); i++ {
			b := foldByte(p.lit[i])
			if f.class[b] == 0 {
				if f.nclasses == 256 {
					return nil
				}
				f.class[b] = uint8(f.nclasses)
				f.nclasses++
			}
		}
	}
	// The trie, with its transitions in the table directly (-1: none yet).
	n := f.nclasses
	newState := func() int32 {
		if len(f.delta)+n > maxTable {
			return -1
		}
		for range n {
			f.delta = append(f.delta, -1)
		}
		f.out = append(f.out, nil)
		return int32(len(f.out) - 1)
	}
	newState()
	for _, p := range patterns {
		s := int32(0)
		for i := 0; i < len(p.lit); i++ {
			at := s*int32(n) + int32(f.class[foldByte(p.lit[i])])
			if f.delta[at] < 0 {
				next := newState()
				if next < 0 {
					return nil
				}
				f.delta[at] = next
			}
			s = f.delta[at]
		}
		f.out[s] = appendSlot(f.out[s], p.slot)
	}
	// Failure links, breadth first, turning the trie into a DFA: a missing transition
	// follows the one of the longest proper suffix that is a trie state.
	fail := make([]int32, len(f.out))
	queue := make([]int32, 0, len(f.out))
	for c := range n {
		if t := f.delta[c]; t < 0 {
			f.delta[c] = 0
		} else {
			queue = append(queue, t)
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, slot := range f.out[fail[s]] {
			f.out[s] = appendSlot(f.out[s], slot)
		}
		for c := range n {
			at := int(s)*n + c
			if t := f.delta[at]; t < 0 {
				f.delta[at] = f.delta[int(fail[s])*n+c]
			} else {
				fail[t] = f.delta[int(fail[s])*n+c]
				queue = append(queue, t)
			}
		}
	}
	return f
}

// appendSlot adds slot to a state's outputs once.
func appendSlot(out []int32, slot int32) []int32 {
	for _, s := range out {
		if s == slot {
			return out
		}
	}
	return append(out, slot)
}

// buildPrefilter numbers the program's matching regexes in detection order and builds
// their prefilter.
func (p *Program) buildPrefilter() {
	var slots []*Regexp
	for _, r := range p.Rules {
		slots = append(slots, r.Regex)
	}
	for _, g := range p.Groups {
		g.Slot = len(slots)
		slots = append(slots, g.Regex)
		for _, r := range g.Rules {
			slots = append(slots, r.Regex)
		}
	}
	p.Prefilter = newPrefilter(slots)
}
