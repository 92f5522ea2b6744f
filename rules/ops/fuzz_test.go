package ops

import (
	"strings"
	"testing"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules/codec"
	"github.com/parley-dev/parley/rules/value"
)

var fuzzEncodings = []v1alpha1.Encoding{"", v1alpha1.EncodingASCII, v1alpha1.EncodingBinary, v1alpha1.EncodingUTF16, v1alpha1.EncodingUTF32}

// FuzzRun runs any operation on any inputs. spec holds the inputs separated by '|', each
// starting with a kind letter (s, i, f, b; anything else is a string); text that does not
// parse as its kind is kept as a string. The checks: no panic, no hang, and a result of
// exactly nOut values whenever there is no error.
func FuzzRun(f *testing.F) {
	f.Add(uint8(0), uint8(1), uint8(0), "i1|i2")
	f.Add(uint8(9), uint8(1), uint8(3), "sabc|s(b)")
	f.Fuzz(func(t *testing.T, opIndex, nOut, enc uint8, spec string) {
		names := Names()
		op, _ := Lookup(names[int(opIndex)%len(names)])
		c, err := codec.For(fuzzEncodings[int(enc)%len(fuzzEncodings)])
		if err != nil {
			t.Fatal(err)
		}
		var in []value.Value
		if spec != "" {
			for _, p := range strings.Split(spec, "|") {
				in = append(in, fuzzValue(p))
			}
		}
		out, err := op.Run(Env{Codec: c}, in, int(nOut%10))
		if err != nil {
			if out != nil || !strings.HasPrefix(err.Error(), op.Name+": ") {
				t.Fatalf("%s%v: error %v with outputs %v", op.Name, in, err, out)
			}
			return
		}
		if len(out) != int(nOut%10) {
			t.Fatalf("%s%v into %d: %d outputs", op.Name, in, nOut%10, len(out))
		}
	})
}

func fuzzValue(p string) value.Value {
	if p == "" {
		return value.OfString("")
	}
	kinds := map[byte]value.Kind{'s': value.String, 'i': value.Int, 'f': value.Float, 'b': value.Bool}
	k, ok := kinds[p[0]]
	if !ok {
		return value.OfString(p)
	}
	v, err := value.Parse(k, p[1:])
	if err != nil {
		return value.OfString(p[1:])
	}
	return v
}
