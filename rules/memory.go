package rules

import (
	"math/rand/v2"
	"strings"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules/value"
)

// Generator makes a random value when a variable's scope starts.
type Generator struct {
	Length   int
	Alphabet string
	Min, Max value.Value
}

const (
	digits = "0123456789"
	lower  = "abcdefghijklmnopqrstuvwxyz"
	upper  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	// symbols is the printable ASCII punctuation Lope's *_and_symbols sets add.
	symbols = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
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
		return value.OfFloat(lo + rand.Float64()*(hi-lo))
	default:
		return value.OfString(g.randomString())
	}
}

// randomString is Length characters drawn from Alphabet.
func (g *Generator) randomString() string {
	var b strings.Builder
	b.Grow(g.Length)
	for range g.Length {
		b.WriteByte(g.Alphabet[rand.IntN(len(g.Alphabet))])
	}
	return b.String()
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
