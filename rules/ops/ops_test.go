package ops

import (
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules/codec"
	"github.com/parley-dev/parley/rules/value"
)

// lope is Lope's list of operations, which the registry must match exactly.
var lope = []string{
	"LGC_AND", "LGC_NAND", "LGC_NOR", "LGC_NOT", "LGC_OR", "LGC_XOR",
	"NBR_DIVIDE", "NBR_FLOOR", "NBR_GEOMETRIC_MEAN", "NBR_GREATER", "NBR_GREATEREQ", "NBR_HARMONIC_MEAN",
	"NBR_INVERSE_SIGN", "NBR_LOWER", "NBR_LOWEREQ", "NBR_MEAN", "NBR_MEDIAN", "NBR_MEDIAN_GROUPED",
	"NBR_MEDIAN_HIGH", "NBR_MEDIAN_LOW", "NBR_MODE", "NBR_MODULO", "NBR_MULTIPLY", "NBR_POP_STD_DEV",
	"NBR_POP_VAR", "NBR_POWER", "NBR_STD_DEV", "NBR_SUBTRACT", "NBR_SUM", "NBR_VAR",
	"STR_CAPTURE", "STR_CONCAT", "STR_COUNT", "STR_DECODE_B64", "STR_DECODE_HEX", "STR_ENCODE_B64",
	"STR_ENCODE_HEX", "STR_LOWER", "STR_MATCH", "STR_MODE", "STR_REPLACE", "STR_SPLIT", "STR_SUBTRACT",
	"STR_TRIM", "STR_UPPER",
}

func TestNames(t *testing.T) {
	if got := Names(); !reflect.DeepEqual(got, lope) {
		t.Errorf("Names() = %v\nwant %v", got, lope)
	}
}

func TestLookup(t *testing.T) {
	for _, name := range lope {
		op, ok := Lookup(name)
		if !ok || op.Name != name || op.Run == nil {
			t.Fatalf("Lookup(%s) = %+v, %v", name, op, ok)
		}
		if op.MinInputs < 1 || op.MaxInputs != -1 && op.MaxInputs < op.MinInputs ||
			op.MinOutputs < 1 || op.MaxOutputs != -1 && op.MaxOutputs < op.MinOutputs {
			t.Errorf("%s: bad counts %+v", name, *op)
		}
		wantRegex := -1
		switch name {
		case "STR_REPLACE", "STR_MATCH", "STR_CAPTURE":
			wantRegex = 1
		}
		if op.RegexInput != wantRegex {
			t.Errorf("%s: RegexInput = %d, want %d", name, op.RegexInput, wantRegex)
		}
	}
	for _, name := range []string{"", "nbr_sum", "NBR_SUMS", "STR_FORMAT"} {
		if op, ok := Lookup(name); ok {
			t.Errorf("Lookup(%q) = %+v, want none", name, op)
		}
	}
	// Callers get copies: changing one must not change the registry.
	op, _ := Lookup("NBR_SUM")
	op.MinInputs = 99
	if again, _ := Lookup("NBR_SUM"); again.MinInputs != 1 {
		t.Error("Lookup returned the registry's own Op")
	}
	counts := map[string][4]int{
		"STR_SPLIT":        {2, 2, 1, -1},
		"STR_REPLACE":      {3, 3, 1, 1},
		"NBR_SUM":          {1, -1, 1, 1},
		"NBR_INVERSE_SIGN": {1, 1, 1, 1},
		"NBR_GREATER":      {2, 2, 1, 1},
		"NBR_VAR":          {2, -1, 1, 1},
		"NBR_STD_DEV":      {2, -1, 1, 1},
		"NBR_POP_VAR":      {1, -1, 1, 1},
		"LGC_NOT":          {1, 1, 1, 1},
		"LGC_XOR":          {1, -1, 1, 1},
	}
	for name, want := range counts {
		op, _ := Lookup(name)
		if got := [4]int{op.MinInputs, op.MaxInputs, op.MinOutputs, op.MaxOutputs}; got != want {
			t.Errorf("%s: counts %v, want %v", name, got, want)
		}
	}
}

func s(x string) value.Value { return value.OfString(x) }
func i(x int64) value.Value  { return value.OfInt(x) }
func f(x float64) value.Value {
	return value.OfFloat(x)
}

func run(t *testing.T, env Env, name string, nOut int, in ...value.Value) ([]value.Value, error) {
	t.Helper()
	op, ok := Lookup(name)
	if !ok {
		t.Fatalf("no op %s", name)
	}
	return op.Run(env, in, nOut)
}

func TestErrors(t *testing.T) {
	big := i(math.MaxInt64)
	small := i(math.MinInt64)
	for _, c := range []struct {
		op   string
		in   []value.Value
		nOut int
		want string
	}{
		{"NBR_DIVIDE", []value.Value{i(1), i(0)}, 1, "division by zero"},
		{"NBR_DIVIDE", []value.Value{f(1.5), f(0)}, 1, "division by zero"},
		{"NBR_DIVIDE", []value.Value{s("1"), s("-0.0")}, 1, "division by zero"},
		{"NBR_FLOOR", []value.Value{i(1), i(0)}, 1, "division by zero"},
		{"NBR_MODULO", []value.Value{i(1), f(0)}, 1, "division by zero"},
		{"NBR_POWER", []value.Value{i(0), i(-1)}, 1, "negative power"},
		{"NBR_POWER", []value.Value{f(-8), f(1.0 / 3)}, 1, "complex"},
		{"NBR_SUM", []value.Value{s("abc")}, 1, `input 1: invalid syntax: "abc" is not a number`},
		{"NBR_SUM", []value.Value{i(1), s("abc")}, 1, "input 2"},
		{"NBR_GREATER", []value.Value{i(1), s("")}, 1, "not a number"},
		{"NBR_MEAN", []value.Value{i(1), s("x")}, 1, "not a number"},
		{"STR_DECODE_B64", []value.Value{s("!!!!")}, 1, "invalid base64"},
		{"STR_DECODE_B64", []value.Value{s("YQ=")}, 1, "invalid base64"},
		{"STR_DECODE_B64", []value.Value{s("YQ==YQ==")}, 1, "invalid base64"},
		{"STR_DECODE_HEX", []value.Value{s("zz")}, 1, "invalid hex"},
		{"STR_DECODE_HEX", []value.Value{s("abc")}, 1, "invalid hex"},
		{"STR_MATCH", []value.Value{s("x"), s("(")}, 1, "bad regular expression"},
		{"STR_REPLACE", []value.Value{s("x"), s("[a-"), s("")}, 1, "bad regular expression"},
		{"STR_CAPTURE", []value.Value{s("x"), s(`(?<=x)`)}, 1, "bad regular expression"},
		{"STR_SPLIT", []value.Value{s("a,b"), s("")}, 2, "empty separator"},
		{"NBR_SUM", []value.Value{big, i(1)}, 1, "overflow"},
		{"NBR_SUBTRACT", []value.Value{small, i(1)}, 1, "overflow"},
		{"NBR_MULTIPLY", []value.Value{i(1 << 32), i(1 << 31)}, 1, "overflow"},
		{"NBR_INVERSE_SIGN", []value.Value{small}, 1, "overflow"},
		{"NBR_FLOOR", []value.Value{small, i(-1)}, 1, "overflow"},
		{"NBR_POWER", []value.Value{i(2), i(63)}, 1, "overflow"},
		{"NBR_POWER", []value.Value{i(-3), i(1000)}, 1, "overflow"},
		{"NBR_POWER", []value.Value{f(10), i(400)}, 1, "range"},
		{"NBR_POP_VAR", []value.Value{i(1 << 32), i(-1 << 32)}, 1, "overflow"}, // Python: 2**64
		{"NBR_VAR", []value.Value{f(math.MaxFloat64), f(-math.MaxFloat64)}, 1, "too large"},
		{"NBR_VAR", []value.Value{i(1)}, 1, "needs at least 2 inputs"},
		{"NBR_STD_DEV", []value.Value{i(1)}, 1, "needs at least 2 inputs"},
		{"NBR_STD_DEV", []value.Value{i(1), f(math.Inf(1))}, 1, "inf or nan"},
		{"NBR_MEAN", nil, 1, "needs at least 1 inputs"},
		{"NBR_MEDIAN", nil, 1, "needs at least 1 inputs"},
		{"NBR_GEOMETRIC_MEAN", []value.Value{i(1), i(0)}, 1, "positive numbers"},
		{"NBR_HARMONIC_MEAN", []value.Value{i(1), i(-1)}, 1, "negative"},
		{"LGC_AND", []value.Value{s("true"), s("maybe")}, 1, `input 2: invalid syntax: "maybe" is not a bool`},
		{"LGC_NOT", []value.Value{s("yes")}, 1, "not a bool"},
		{"LGC_NOT", []value.Value{s("true"), s("true")}, 1, "needs exactly 1 inputs, got 2"},
		{"NBR_SUM", []value.Value{i(1)}, 2, "needs exactly 1 outputs, got 2"},
		{"NBR_SUM", []value.Value{i(1)}, 0, "needs exactly 1 outputs, got 0"},
		{"STR_SPLIT", []value.Value{s("a"), s(",")}, 0, "needs at least 1 outputs"},
		{"STR_SPLIT", []value.Value{s("a"), s(",")}, 1 << 30, "more than"},
		{"STR_SPLIT", []value.Value{s("a")}, 1, "needs exactly 2 inputs, got 1"},
		{"STR_REPLACE", []value.Value{s("a"), s("b")}, 1, "needs exactly 3 inputs"},
		{"NBR_GREATER", []value.Value{i(1), i(2), i(3)}, 1, "needs exactly 2 inputs"},
	} {
		out, err := run(t, Env{}, c.op, c.nOut, c.in...)
		if err == nil {
			t.Errorf("%s%v = %v, want error %q", c.op, c.in, out, c.want)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, c.op+": ") || !strings.Contains(msg, c.want) {
			t.Errorf("%s%v: error %q, want %q prefixed with the op", c.op, c.in, msg, c.want)
		}
		if out != nil {
			t.Errorf("%s%v: outputs %v with an error", c.op, c.in, out)
		}
	}
}

// TestGoSemantics covers what the golden file cannot: where the brief picks Go's behaviour
// over Python's, and the conversation's encoding.
func TestGoSemantics(t *testing.T) {
	utf16, _ := codec.For(v1alpha1.EncodingUTF16)
	binary, _ := codec.For(v1alpha1.EncodingBinary)
	ascii, _ := codec.For(v1alpha1.EncodingASCII)
	for _, c := range []struct {
		env  Env
		op   string
		in   []value.Value
		want string
	}{
		{Env{}, "STR_REPLACE", []value.Value{s("john smith"), s(`(\w+) (\w+)`), s("$2, $1")}, "smith, john"},
		{Env{}, "STR_REPLACE", []value.Value{s("a1b2"), s(`(\d)`), s("${1}0")}, "a10b20"},
		{Env{}, "STR_REPLACE", []value.Value{s("baac"), s(`a*`), s("-")}, "-b-c-"}, // Python: -b--c-
		{Env{}, "STR_CAPTURE", []value.Value{s("k=v"), s(`(?P<key>\w)=(\w)`)}, "k"},
		{Env{}, "STR_DECODE_B64", []value.Value{s("aGVs\r\nbG8=")}, "hello"},
		{Env{}, "STR_DECODE_B64", []value.Value{s("/w==")}, "\xff"},
		{Env{}, "STR_ENCODE_HEX", []value.Value{s("é")}, "c3a9"},
		{Env{Codec: utf16}, "STR_ENCODE_HEX", []value.Value{s("hé")}, "006800e9"},
		{Env{Codec: utf16}, "STR_DECODE_HEX", []value.Value{s("006800E9")}, "hé"},
		{Env{Codec: utf16}, "STR_ENCODE_B64", []value.Value{s("hi")}, "AGgAaQ=="},
		{Env{Codec: binary}, "STR_ENCODE_HEX", []value.Value{s("\u00ff\u0000A")}, "ff0041"},
		{Env{Codec: binary}, "STR_DECODE_B64", []value.Value{s("/wA=")}, "\u00ff\u0000"},
		{Env{Codec: ascii}, "STR_ENCODE_HEX", []value.Value{s("aé")}, "613f"},
		{Env{Codec: ascii}, "STR_DECODE_HEX", []value.Value{s("61ff")}, "a\ufffd"},
		{Env{}, "STR_COUNT", []value.Value{s("a\xffb")}, "3"},
		{Env{}, "STR_CONCAT", []value.Value{value.OfBool(true), f(2), i(-1)}, "true2.0-1"},
		{Env{}, "STR_UPPER", []value.Value{s("a\xffb")}, "A\xffB"}, // bytes the utf-8 codec kept stay
	} {
		out, err := run(t, c.env, c.op, 1, c.in...)
		if err != nil || len(out) != 1 || out[0].String() != c.want || out[0].Kind() != kindOf(c.op) {
			t.Errorf("%s%q = %v, %v; want %q", c.op, c.in, out, err, c.want)
		}
	}
}

func kindOf(op string) value.Kind {
	if op == "STR_COUNT" {
		return value.Int
	}
	return value.String
}

func TestSplitOutputs(t *testing.T) {
	for n := 1; n <= 5; n++ {
		out, err := run(t, Env{}, "STR_SPLIT", n, s("a;b;c"), s(";"))
		if err != nil || len(out) != n {
			t.Fatalf("STR_SPLIT into %d = %v, %v", n, out, err)
		}
		for k, v := range out {
			want := ""
			if k < 3 {
				want = string(rune('a' + k))
			}
			if v.String() != want || v.Kind() != value.String {
				t.Errorf("STR_SPLIT into %d: output %d = %q, want %q", n, k, v, want)
			}
		}
	}
}

// Long data sets take the stable-sort path of pySorted; the golden file covers them without
// nan, this checks the answers directly.
func TestLongStatistics(t *testing.T) {
	in := make([]value.Value, 0, 201)
	for k := 200; k >= 0; k-- {
		in = append(in, s(strconv.Itoa(k)))
	}
	for op, want := range map[string]string{
		"NBR_MEDIAN": "100", "NBR_MEDIAN_LOW": "100", "NBR_MEDIAN_HIGH": "100", "NBR_MEAN": "100",
		"NBR_MEDIAN_GROUPED": "100.0", "NBR_MODE": "200", "NBR_VAR": "3383.5", "NBR_POP_VAR": "3366.6666666666665",
	} {
		out, err := run(t, Env{}, op, 1, in...)
		if err != nil || out[0].String() != want {
			t.Errorf("%s(200..0) = %v, %v; want %s", op, out, err, want)
		}
	}
}

func TestArity(t *testing.T) {
	for _, tc := range []struct {
		lo, hi int
		want   string
	}{{2, 2, "2"}, {1, 3, "1 to 3"}, {0, -1, "0 or more"}, {1, -1, "1 or more"}} {
		if got := Arity(tc.lo, tc.hi); got != tc.want {
			t.Errorf("Arity(%d, %d) = %q, want %q", tc.lo, tc.hi, got, tc.want)
		}
	}
}
