package ops

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/parley-dev/parley/rules/value"
)

// The golden file is written by testdata/gen_golden.py from real Python; see there.
type goldenCase struct {
	Op          string      `json:"op"`
	In          [][2]string `json:"in"`
	NOut        int         `json:"nout"`
	Out         [][2]string `json:"out"`
	Error       string      `json:"error"`
	Unsupported string      `json:"unsupported"`
	Python      string      `json:"python"`
}

func loadGolden(t *testing.T) []goldenCase {
	t.Helper()
	raw, err := os.ReadFile("testdata/python_golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Python string       `json:"python"`
		Cases  []goldenCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Cases) == 0 {
		t.Fatal("no golden cases")
	}
	t.Logf("%d cases from Python %s", len(g.Cases), g.Python)
	return g.Cases
}

// pyKinds maps Python's type names to ours.
var pyKinds = map[string]value.Kind{"int": value.Int, "float": value.Float, "bool": value.Bool, "str": value.String}

// pyText is how Python printed the value, in our spelling of bools.
func pyText(typ, s string) string {
	if typ == "bool" {
		if s == "True" {
			return "true"
		}
		return "false"
	}
	return s
}

func TestGolden(t *testing.T) {
	seen := map[string]bool{}
	for i, c := range loadGolden(t) {
		seen[c.Op] = true
		op, ok := Lookup(c.Op)
		if !ok {
			t.Errorf("case %d: unknown op %s", i, c.Op)
			continue
		}
		in := make([]value.Value, len(c.In))
		for j, x := range c.In {
			k, ok := value.ParseKind(x[0])
			if !ok {
				t.Fatalf("case %d: bad kind %q", i, x[0])
			}
			v, err := value.Parse(k, x[1])
			if err != nil {
				t.Fatalf("case %d: input %q: %v", i, x[1], err)
			}
			in[j] = v
		}
		got, err := op.Run(Env{}, in, c.NOut)
		name := func() string { return c.Op + formatIn(c.In) }
		switch {
		case c.Error != "" || c.Unsupported != "":
			why := c.Error
			if why == "" {
				why = c.Unsupported + ": " + c.Python
			}
			if err == nil {
				t.Errorf("%s = %v, want an error (Python: %s)", name(), got, why)
			}
		case err != nil:
			t.Errorf("%s: unexpected error %v, Python gives %v", name(), err, c.Out)
		case len(got) != len(c.Out):
			t.Errorf("%s = %v, Python gives %v", name(), got, c.Out)
		default:
			for j, want := range c.Out {
				if got[j].String() != pyText(want[0], want[1]) || got[j].Kind() != pyKinds[want[0]] {
					t.Errorf("%s: output %d = %s (%s), Python gives %s (%s)", name(), j, got[j], got[j].Kind(), want[1], want[0])
				}
			}
		}
	}
	for _, n := range Names() {
		if !seen[n] {
			t.Errorf("no golden case for %s", n)
		}
	}
}

func formatIn(in [][2]string) string {
	b, _ := json.Marshal(in)
	return string(b)
}
