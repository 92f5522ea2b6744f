package rules

import (
	"math/rand/v2"
	"strconv"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules/value"
)

// Generator makes a random value when a variable's scope starts.
type Generator struct {
	Length   int
	Alphabet string
	// Avoid lists texts a generated string never holds (a session's separator and endValue).
	Avoid    []string
	Min, Max value.Value
}

const (
	digits = "0123456789"
	lower  = "abcdefghijklmnopqrstuvwxyz"
	upper  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	// symbols are the 22 symbols Lope's *_and_symbols sets add, not all of ASCII's
	// punctuation: no quotes, backslash, comma, dot, semicolon, braces, backtick or tilde.
	symbols = "/?+-*=:[]^@#$%&()_!<>|"
	// floatDecimals is how many decimals a generated float keeps, as in Lope.
	floatDecimals = 2
)

var alphabets = map[v1alpha1.Charset]string{
	v1alpha1.CharsetNumeric:           digits,
	v1alpha1.CharsetHexLower:          digits + "abcdef",
	v1alpha1.CharsetHexUpper:          digits + "ABCDEF",
	v1alpha1.CharsetHexMixed:          digits + "abcdefABCDEF",
	v1alpha1.CharsetAlphanumericLower: digits + lower,
	v1alpha1.CharsetAlphanumericUpper: digits + upper,
	v1alpha1.CharsetAlphanumericMixed: digits + lower + upper,
	v1alpha1.CharsetSymbolsLower:      digits + lower + symbols,
	v1alpha1.CharsetSymbolsUpper:      digits + upper + symbols,
	v1alpha1.CharsetSymbolsMixed:      digits + lower + upper + symbols,
}

// Initial is the value a variable starts with: generated when asked, else its default.
func (v *Variable) Initial() value.Value {
	if v.Generate == nil {
		return v.Default
	}
	g := v.Generate
	switch v.Kind {
	case value.Bool:
		return value.OfBool(rand.IntN(2) == 1)
	case value.Int:
		lo, hi := g.Min.AsInt(), g.Max.AsInt()
		return value.OfInt(lo + rand.Int64N(hi-lo+1))
	case value.Float:
		lo, hi := g.Min.AsFloat(), g.Max.AsFloat()
		return value.OfFloat(round(lo+rand.Float64()*(hi-lo), floatDecimals))
	default:
		return value.OfString(g.randomString())
	}
}

// round rounds f to n decimals as Python's round(f, n) does: from f's exact binary value,
// ties to even.
func round(f float64, n int) float64 {
	r, err := strconv.ParseFloat(strconv.FormatFloat(f, 'f', n, 64), 64)
	if err != nil {
		return f
	}
	return r
}

// randomString is Length characters drawn from Alphabet, none of Avoid among them: a
// character that would complete one of them is drawn again (at most one character per
// text in Avoid is refused at each step, and every alphabet has ten or more).
func (g *Generator) randomString() string {
	b := make([]byte, 0, g.Length)
	for len(b) < g.Length {
		c := g.Alphabet[rand.IntN(len(g.Alphabet))]
		if !g.completesAvoided(b, c) {
			b = append(b, c)
		}
	}
	return string(b)
}

// completesAvoided reports whether b followed by c ends with a text of Avoid.
func (g *Generator) completesAvoided(b []byte, c byte) bool {
	for _, a := range g.Avoid {
		n := len(a)
		if a[n-1] == c && len(b) >= n-1 && string(b[len(b)-(n-1):]) == a[:n-1] {
			return true
		}
	}
	return false
}

// NewValues returns fresh values for a scope's variables.
func NewValues(vars []*Variable) []value.Value {
	if len(vars) == 0 {
		return nil
	}
	out := make([]value.Value, len(vars))
	for i, v := range vars {
		out[i] = v.Initial()
	}
	return out
}
