package value

import (
	"math"
	"testing"
)

func TestFormatFloatLikePythonRepr(t *testing.T) {
	for f, want := range map[float64]string{
		1: "1.0", 1.5: "1.5", 0.30000000000000004: "0.30000000000000004", 0.3: "0.3", 1e16: "1e+16", 1e15: "1000000000000000.0",
		1.5e-5: "1.5e-05", 0.0001: "0.0001", -2.5: "-2.5", math.Inf(1): "inf", math.Inf(-1): "-inf",
		123456789012345680: "1.2345678901234568e+17", 1234567890123456.7: "1234567890123456.8", 1e22: "1e+22", 5e-324: "5e-324",
	} {
		if got := FormatFloat(f); got != want {
			t.Errorf("FormatFloat(%v) = %q, want %q", f, got, want)
		}
	}
	if FormatFloat(math.NaN()) != "nan" || FormatFloat(math.Copysign(0, -1)) != "-0.0" {
		t.Error("nan or -0.0")
	}
}

func TestParseAndConvert(t *testing.T) {
	if v, err := Parse(Int, " 42 "); err != nil || v.AsInt() != 42 {
		t.Errorf("int: %v %v", v, err)
	}
	for _, bad := range []struct {
		k Kind
		s string
	}{{Int, "4.2"}, {Int, "0x10"}, {Float, "1_000"}, {Float, "0x1p3"}, {Bool, "yes"}} {
		if _, err := Parse(bad.k, bad.s); err == nil {
			t.Errorf("Parse(%s, %q) accepted", bad.k, bad.s)
		}
	}
	if v, _ := OfFloat(-2.9).Convert(Int); v.AsInt() != -2 {
		t.Errorf("float to int truncates toward zero: %v", v)
	}
	if v, _ := OfString("2.5").Convert(Int); v.AsInt() != 2 {
		t.Errorf("numeric string to int: %v", v)
	}
	if _, err := OfFloat(1e300).Convert(Int); err == nil {
		t.Error("1e300 fit an int")
	}
	if v, _ := OfBool(true).Convert(String); v.AsString() != "true" {
		t.Errorf("bool to string: %v", v)
	}
	if !OfInt(1).Equal(OfFloat(1.0)) || OfInt(1).Equal(OfString("1")) || !OfString("a").Equal(OfString("a")) {
		t.Error("Equal")
	}
	if n, _ := ParseNumber("3"); n.Kind() != Int {
		t.Error("ParseNumber(3) is not an int")
	}
	if n, _ := ParseNumber("3.0"); n.Kind() != Float {
		t.Error("ParseNumber(3.0) is not a float")
	}
}

// Text a conversation writes into a typed variable (a capture, a string an operation or
// another variable hands over) is read as Lope reads it, never refused for what surrounds
// the number: bools are true only for "true" in any case, numbers are the first number in
// the text, with Python's underscores between digits.
func TestStoreReadsTextAsLope(t *testing.T) {
	for _, c := range []struct {
		k    Kind
		text string
		want string // "" means an error
	}{
		{Bool, "true", "true"}, {Bool, "TRUE", "true"}, {Bool, "True", "true"}, {Bool, "1", "false"},
		{Bool, "yes", "false"}, {Bool, " true", "false"}, {Bool, "", "false"},
		{Int, "12abc", "12"}, {Int, "abc12", "12"}, {Int, " 42 ", "42"}, {Int, "-5x", "-5"}, {Int, "+7", "7"},
		{Int, "x-3y", "-3"}, {Int, "--4", "-4"}, {Int, "1_000", "1000"}, {Int, "1__000", "1"}, {Int, "7.9", "7"},
		{Int, "-7.9", "-7"}, {Int, "1e3", "1"}, {Int, "abc", ""}, {Int, "", ""}, {Int, "99999999999999999999", ""},
		{Float, "1.2.3", "1.2"}, {Float, "2.5kg", "2.5"}, {Float, ".5", "0.5"}, {Float, "5.", "5.0"},
		{Float, "1e3", "1.0"}, {Float, "-0.25 units", "-0.25"}, {Float, "1_000.5", "1000.5"}, {Float, "12", "12.0"},
		{Float, "inf", ""}, {Float, "abc", ""},
		{String, "12abc", "12abc"},
	} {
		v, err := OfString(c.text).Store(c.k)
		switch {
		case c.want == "" && c.k != String:
			if err == nil {
				t.Errorf("Store(%s, %q) = %v, want an error", c.k, c.text, v)
			}
		case err != nil || v.Kind() != c.k || v.String() != c.want:
			t.Errorf("Store(%s, %q) = %v (%s, err %v), want %s", c.k, c.text, v, v.Kind(), err, c.want)
		}
	}
	// Values that are not text convert as Convert does.
	if v, err := OfFloat(-2.9).Store(Int); err != nil || v.AsInt() != -2 {
		t.Errorf("float to int: %v %v", v, err)
	}
	if v, err := OfInt(0).Store(Bool); err != nil || v.AsBool() {
		t.Errorf("int to bool: %v %v", v, err)
	}
	// Values written in the API keep the strict syntax, with their errors.
	for _, bad := range []struct {
		k Kind
		s string
	}{{Int, "12abc"}, {Int, "1_000"}, {Bool, "yes"}, {Float, "2.5kg"}} {
		if _, err := Parse(bad.k, bad.s); err == nil {
			t.Errorf("Parse(%s, %q) accepted", bad.k, bad.s)
		}
	}
}
