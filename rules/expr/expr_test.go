package expr_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules/codec"
	"github.com/parley-dev/parley/rules/expr"
	"github.com/parley-dev/parley/rules/value"
)

// memory is a conversation's variables, by slot.
type memory []value.Value

func (m memory) ExprValue(slot int) value.Value { return m[slot] }

var testVars = []expr.Var{
	{Name: "hits", Kind: value.Int},
	{Name: "ratio", Kind: value.Float},
	{Name: "ok", Kind: value.Bool},
	{Name: "user", Kind: value.String},
	{Name: "svc.name", Kind: value.String},
	{Name: "my-var", Kind: value.String},
	{Name: "peer.ip", Kind: value.String},
	{Name: "input", Kind: value.String},
	{Name: "hits", Kind: value.String}, // a second scope's: the first declaration wins
}

func newEnv(t testing.TB, input int) *expr.Env {
	t.Helper()
	env, err := expr.NewEnv(testVars, expr.Sizes{Input: input, Value: expr.DefaultValueSize})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func newActivation(env *expr.Env, input string) *expr.Activation {
	mem := memory{value.OfInt(3), value.OfFloat(0.5), value.OfBool(true), value.OfString("alice"), value.OfString("redis")}
	a := env.NewActivation(mem)
	a.Input, a.Raw = input, []byte(input)
	a.Peer = netip.MustParseAddrPort("10.1.2.3:4567")
	a.ConnID, a.ConnInputs = "c-000007", 2
	a.SessionKey, a.SessionValue = "sid", "abc"
	return a
}

var binaryCodec, _ = codec.For(v1alpha1.EncodingBinary)

func eval(t *testing.T, env *expr.Env, src, input string) value.Value {
	t.Helper()
	p, err := env.Compile(src, expr.Printable)
	if err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	v, err := p.Value(newActivation(env, input), binaryCodec)
	if err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	return v
}

func TestEnvironmentNames(t *testing.T) {
	env := newEnv(t, 1024)
	for src, want := range map[string]string{
		"hits + 1":                          "4",
		"ratio * 2.0":                       "1.0",
		"ok && hits == 3":                   "true",
		"user.upperAscii()":                 "ALICE",
		"svc.name":                          "redis",
		"input.trim()":                      "PING",
		"raw.size()":                        "6",
		"peer.ip":                           "10.1.2.3",
		"peer.port":                         "4567",
		"conn.id":                           "c-000007",
		"conn.inputs":                       "2",
		"session.key + '=' + session.value": "sid=abc",
		"now > timestamp('2020-01-01T00:00:00Z')": "true",
		"math.greatest(hits, 7)":                  "7",
		"base64.encode(b'hi')":                    "aGk=",
		"[3, 1, 2].sort()[0]":                     "1",
		"'a,b'.split(',').size()":                 "2",
	} {
		if got := eval(t, env, src, "PING\r\n").String(); got != want {
			t.Errorf("%s = %q, want %q", src, got, want)
		}
	}
}

func TestHiddenVariablesAreExplained(t *testing.T) {
	env := newEnv(t, 1024)
	for src, want := range map[string]string{
		"my-var == 'x'": `variable "my-var" holds '-'`,
		"input == 'x'":  "", // the built-in
	} {
		_, err := env.Compile(src, expr.Bool)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", src, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: error %v, want it to say %q", src, err, want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	env := newEnv(t, 1024)
	for _, c := range []struct {
		src  string
		want Result
		err  string
	}{
		{"", expr.Bool, "empty expression"},
		{"hits + ", expr.Bool, "1:8: Syntax error"},
		{"nobody == 1", expr.Bool, "1:1: undeclared reference to 'nobody'"},
		{"hits + 'a'", expr.Scalar, "found no matching overload for '_+_' applied to '(int, string)'"},
		{"hits + 1", expr.Bool, "gives int, not bool"},
		{"[1, 2]", expr.Scalar, "gives list(int), not int, uint, double, bool, string or bytes"},
		{"hits", expr.Text, "gives int, not string or bytes"},
		{"{'a': 1}", expr.Printable, "gives map(string, int)"},
		{"output", expr.Text, "undeclared reference to 'output'"},
		{"sha256(hits)", expr.Scalar, "found no matching overload for 'sha256' applied to '(int)'"},
	} {
		_, err := env.Compile(c.src, c.want)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q: error %v, want it to hold %q", c.src, err, c.err)
		}
	}
	if _, err := env.CompileOutput("output + '!'"); err != nil {
		t.Errorf("output in a transform of replies: %v", err)
	}
}

type Result = expr.Result

// A loop over a large input is refused before it can run.
func TestCostOverBudgetIsRefusedAtCompile(t *testing.T) {
	nested := "input.split('').map(a, input.split('').map(b, a + b)).size() > 0"
	if _, err := newEnv(t, 1024).Compile(nested, expr.Bool); err == nil || !strings.Contains(err.Error(), "over the budget") {
		t.Fatalf("nested loops over a 1024-byte input: error %v, want a cost over the budget", err)
	}
	single := "input.split(' ').exists(w, w == user)"
	if _, err := newEnv(t, 1024).Compile(single, expr.Bool); err != nil {
		t.Fatalf("one loop over the words of a 1024-byte input: %v", err)
	}
	// The estimate follows the largest input the operation allows.
	if _, err := newEnv(t, 1<<20).Compile("input.split('').exists(c, c == user)", expr.Bool); err == nil {
		t.Fatal("a loop over every character of a 1 MiB input with a variable comparison was accepted")
	}
}

// A value longer than estimated (a variable holding a large capture) cannot make an
// evaluation run long: the run-time limit cuts it, as an error.
func TestCostOverBudgetIsCutAtRunTime(t *testing.T) {
	env := newEnv(t, 16)
	p, err := env.Compile("user.split('').exists(c, c == 'z')", expr.Bool)
	if err != nil {
		t.Fatal(err)
	}
	a := newActivation(env, "x")
	a.Memory = memory{value.OfInt(0), value.OfFloat(0), value.OfBool(false), value.OfString(strings.Repeat("ab", 256<<10)), value.OfString("")}
	_, err = p.Bool(a)
	if err == nil || !strings.Contains(err.Error(), "limit exceeded") {
		t.Fatalf("error %v, want a cost or memory limit exceeded", err)
	}
}

// Only an expression whose cost grows with what it reads pays for run-time cost tracking.
func TestRunTimeLimitOnlyWhereCostCanGrow(t *testing.T) {
	env := newEnv(t, 1024)
	for src, limited := range map[string]bool{
		"hits == 3":                            false,
		"input.startsWith('A')":                false,
		"be16(hits) + b'x'":                    false,
		"hex(sha256(input))":                   true,
		"user.contains('x')":                   true,
		"input.split(' ').exists(w, w == 'a')": true,
	} {
		p, err := env.Compile(src, expr.Printable)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if p.Limited != limited {
			t.Errorf("%s: limited %v, want %v", src, p.Limited, limited)
		}
	}
}
