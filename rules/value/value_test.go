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
