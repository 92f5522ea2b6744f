// Package value is the typed memory of a conversation: int, float, bool and string values,
// parsed from the API's strings and printed the way Python prints them, so that rules written
// for Lope produce the same text.
package value

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// Kind is the type of a value.
type Kind uint8

// Kinds of values; the zero Kind is String so that an unset type means string, as in Lope.
const (
	String Kind = iota
	Int
	Float
	Bool
)

func (k Kind) String() string {
	switch k {
	case Int:
		return "int"
	case Float:
		return "float"
	case Bool:
		return "bool"
	default:
		return "string"
	}
}

// ParseKind maps an API type name ("int", "float", "bool", "string", "") to a Kind.
func ParseKind(name string) (Kind, bool) {
	switch name {
	case "", "string":
		return String, true
	case "int":
		return Int, true
	case "float":
		return Float, true
	case "bool":
		return Bool, true
	}
	return String, false
}

// Value is an immutable typed value. The zero Value is the empty string.
type Value struct {
	kind Kind
	i    int64 // Int; Bool as 0/1
	f    float64
	s    string
}

// OfInt, OfFloat, OfBool and OfString build values.
func OfInt(i int64) Value     { return Value{kind: Int, i: i} }
func OfFloat(f float64) Value { return Value{kind: Float, f: f} }
func OfString(s string) Value { return Value{kind: String, s: s} }
func OfBool(b bool) Value {
	if b {
		return Value{kind: Bool, i: 1}
	}
	return Value{kind: Bool}
}

// Zero is the value of an unset variable of kind k: 0, 0.0, false or "".
func Zero(k Kind) Value { return Value{kind: k} }

// Kind reports the value's kind.
func (v Value) Kind() Kind { return v.kind }

// AsInt, AsFloat, AsBool and AsString return the raw content; they are only meaningful for
// the matching kind.
func (v Value) AsInt() int64     { return v.i }
func (v Value) AsFloat() float64 { return v.f }
func (v Value) AsBool() bool     { return v.i != 0 }
func (v Value) AsString() string { return v.s }

// IsNumber reports whether the value is an int or a float.
func (v Value) IsNumber() bool { return v.kind == Int || v.kind == Float }

// Float64 is the numeric value as a float (bools count as 0 and 1).
func (v Value) Float64() float64 {
	if v.kind == Float {
		return v.f
	}
	return float64(v.i)
}

// String prints the value as Python's str() would, except bools, which print as the API
// writes them: "true" and "false".
func (v Value) String() string {
	switch v.kind {
	case Int:
		return strconv.FormatInt(v.i, 10)
	case Float:
		return FormatFloat(v.f)
	case Bool:
		if v.i != 0 {
			return "true"
		}
		return "false"
	default:
		return v.s
	}
}

// Equal compares two values: numbers by numeric value (1 == 1.0, as in Python), everything
// else by kind and content.
func (v Value) Equal(o Value) bool {
	if v.IsNumber() && o.IsNumber() {
		if v.kind == Int && o.kind == Int {
			return v.i == o.i
		}
		return v.Float64() == o.Float64()
	}
	if v.kind != o.kind {
		return false
	}
	if v.kind == String {
		return v.s == o.s
	}
	return v.i == o.i
}

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("invalid syntax")

// Parse reads s as a value of kind k, the way every value in the API is written.
func Parse(k Kind, s string) (Value, error) {
	switch k {
	case Int:
		i, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return Value{}, fmt.Errorf("%w: %q is not an int", ErrSyntax, s)
		}
		return OfInt(i), nil
	case Float:
		f, err := parseFloat(s)
		if err != nil {
			return Value{}, fmt.Errorf("%w: %q is not a float", ErrSyntax, s)
		}
		return OfFloat(f), nil
	case Bool:
		b, ok := parseBool(s)
		if !ok {
			return Value{}, fmt.Errorf("%w: %q is not a bool (true or false)", ErrSyntax, s)
		}
		return OfBool(b), nil
	default:
		return OfString(s), nil
	}
}

// ParseNumber reads s as Python's int() or, failing that, float() would: "3" is an int,
// "3.5", "1e3" and "inf" are floats.
func ParseNumber(s string) (Value, error) {
	t := strings.TrimSpace(s)
	if i, err := strconv.ParseInt(t, 10, 64); err == nil {
		return OfInt(i), nil
	}
	if f, err := parseFloat(t); err == nil {
		return OfFloat(f), nil
	}
	return Value{}, fmt.Errorf("%w: %q is not a number", ErrSyntax, s)
}

// Number returns v as a number: ints and floats as they are, bools as 0 or 1, strings parsed
// with ParseNumber.
func (v Value) Number() (Value, error) {
	switch v.kind {
	case Int, Float:
		return v, nil
	case Bool:
		return OfInt(v.i), nil
	default:
		return ParseNumber(v.s)
	}
}

// Truth returns v as a bool: bools as they are, numbers by being non-zero, strings parsed as
// the API writes bools.
func (v Value) Truth() (bool, error) {
	switch v.kind {
	case Bool, Int:
		return v.i != 0, nil
	case Float:
		return v.f != 0, nil
	default:
		b, ok := parseBool(v.s)
		if !ok {
			return false, fmt.Errorf("%w: %q is not a bool (true or false)", ErrSyntax, v.s)
		}
		return b, nil
	}
}

// Convert returns v as kind k, as Python's int(), float(), str() would (floats to ints
// truncate toward zero); it fails when a string does not parse or a float does not fit.
func (v Value) Convert(k Kind) (Value, error) {
	if v.kind == k {
		return v, nil
	}
	switch k {
	case String:
		return OfString(v.String()), nil
	case Bool:
		b, err := v.Truth()
		if err != nil {
			return Value{}, err
		}
		return OfBool(b), nil
	case Float:
		n, err := v.Number()
		if err != nil {
			return Value{}, err
		}
		return OfFloat(n.Float64()), nil
	default: // Int
		if v.kind == String {
			// int("2.5") fails in Python; int(float("2.5")) is what a capture wants.
			n, err := ParseNumber(v.s)
			if err != nil {
				return Value{}, err
			}
			return n.Convert(Int)
		}
		if v.kind == Float {
			if math.IsNaN(v.f) || math.IsInf(v.f, 0) || v.f >= 9.223372036854775807e18 || v.f < -9.223372036854775808e18 {
				return Value{}, fmt.Errorf("%w: %s does not fit an int", ErrSyntax, FormatFloat(v.f))
			}
			return OfInt(int64(v.f)), nil
		}
		return OfInt(v.i), nil
	}
}

// Store returns v as it is written into a variable of kind k at run time (a capture, an
// update fromVariable, an operation's output): text is read as Lope reads it (see FromText),
// anything else converts as Convert does.
func (v Value) Store(k Kind) (Value, error) {
	if v.kind == String && k != String {
		return FromText(k, v.s)
	}
	return v.Convert(k)
}

// number is the first number in a text: a sign, digits with Python's single underscores
// between them, and a fraction; no exponent, as Lope reads numbers.
var number = regexp.MustCompile(`[-+]?(?:[0-9](?:_?[0-9])*(?:\.(?:[0-9](?:_?[0-9])*)?)?|\.[0-9](?:_?[0-9])*)`)

// FromText reads text as Lope reads what a conversation writes into a typed variable: a
// bool is true only for "true" in any case, and false for anything else ("1", "yes"); an int
// is the integer part of the first number in the text ("12abc" is 12, "7.9" is 7); a float
// is the first number ("1.2.3" is 1.2, "1e3" is 1.0). Numbers take underscores between
// digits as Python does ("1_000" is 1000). Text without a number, or an int that does not
// fit 64 bits, is an error. Values written in the API are read strictly, by Parse.
func FromText(k Kind, text string) (Value, error) {
	switch k {
	case Bool:
		return OfBool(strings.ToLower(text) == "true"), nil
	case Int, Float:
		n := number.FindString(text)
		if n == "" {
			return Value{}, fmt.Errorf("%w: %q holds no number", ErrSyntax, text)
		}
		n = strings.ReplaceAll(n, "_", "")
		if k == Float {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil && !errors.Is(err, strconv.ErrRange) {
				return Value{}, fmt.Errorf("%w: %q is not a float", ErrSyntax, text)
			}
			return OfFloat(f), nil
		}
		whole, _, _ := strings.Cut(n, ".")
		switch whole {
		case "", "-", "+": // ".5"
			return OfInt(0), nil
		}
		i, err := strconv.ParseInt(whole, 10, 64)
		if err != nil {
			return Value{}, fmt.Errorf("%w: %s does not fit an int", ErrSyntax, whole)
		}
		return OfInt(i), nil
	default:
		return OfString(text), nil
	}
}

// FormatFloat prints f as Python's repr() does: the shortest text that reads back as f,
// "1.0" rather than "1", exponents from 1e16 and below 1e-4, and inf/nan spelled out.
func FormatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	exp := int(math.Floor(math.Log10(math.Abs(f))))
	e := strconv.FormatFloat(f, 'e', -1, 64)
	// Log10 can be off by one near powers of ten; the shortest 'e' form is exact.
	if i := strings.LastIndexByte(e, 'e'); i >= 0 {
		if x, err := strconv.Atoi(e[i+1:]); err == nil {
			exp = x
		}
	}
	if exp < -4 || exp >= 16 {
		return e
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

func parseFloat(s string) (float64, error) {
	t := strings.TrimSpace(s)
	switch strings.ToLower(t) {
	case "inf", "+inf", "infinity", "+infinity":
		return math.Inf(1), nil
	case "-inf", "-infinity":
		return math.Inf(-1), nil
	case "nan", "+nan", "-nan":
		return math.NaN(), nil
	}
	// Go accepts hex floats and underscores; Python's float() does not.
	if strings.ContainsAny(t, "xXpP_") {
		return 0, ErrSyntax
	}
	return strconv.ParseFloat(t, 64)
}

func parseBool(s string) (bool, bool) {
	switch strings.TrimSpace(s) {
	case "true", "True", "TRUE", "1":
		return true, true
	case "false", "False", "FALSE", "0":
		return false, true
	}
	return false, false
}
