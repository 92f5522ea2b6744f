package activity_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/randfill"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/evidence"
)

func stdJSON(t testing.TB, a *v1alpha1.ActivityRecord) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(a); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// record builds an activity whose optional parts are chosen by bits and whose strings are s,
// for the fuzz target (whose corpus is in these three values) and the benchmark.
func record(bits uint16, s string, n int32) *v1alpha1.ActivityRecord {
	on := func(i uint) bool { return bits&(1<<i) != 0 }
	a := &v1alpha1.ActivityRecord{Type: v1alpha1.ActivityType(s)}
	if on(0) {
		a.Connector = s
	}
	if on(1) {
		a.Time = metav1.NewMicroTime(time.Unix(int64(n)*7919, int64(n)*1000003).In(time.FixedZone("x", 3600)))
	}
	if on(2) {
		a.Connection = &v1alpha1.ConnectionRef{ID: s, Peer: s + ":1", Transport: "TCP"}
		if on(3) {
			a.Connection.Session = s
		}
	}
	if on(4) {
		a.Input = &v1alpha1.InputRecord{Text: s, Base64: s, Bytes: n, Truncated: on(5)}
		if on(11) {
			a.Input.Preview = s
		}
	}
	if on(6) {
		a.Rules = &v1alpha1.RulesRecord{}
		if on(7) {
			a.Rules.Executed = []int32{n, -n, 3}
		}
		if on(8) {
			a.Rules.Async, a.Rules.Basic = []int32{n}, s
		}
		if on(9) {
			a.Rules.Scheduled = []int32{}
		}
	}
	if on(10) {
		a.Output = &v1alpha1.OutputRecord{Bytes: n}
		if on(5) {
			a.Output.Text, a.Output.Base64, a.Output.Truncated = s, s, on(3)
		}
		a.Captures = []v1alpha1.CaptureRecord{{Rule: n, Variable: s, Value: s}, {Rule: 2, Variable: "v", Value: ""}}
	}
	if on(11) {
		a.Memory = &v1alpha1.MemorySnapshot{Global: map[string]string{s: s, "b": "1", "a": "2"}}
		if on(12) {
			a.Memory.Connection = map[string]string{"z": s}
		}
	}
	if on(13) {
		a.RulesRef = &v1alpha1.RulesRef{Name: s, Generation: int64(n), Hash: "sha256:" + s}
	}
	a.Alert = on(14)
	if on(15) {
		a.Message = s
	}
	return a
}

// fill makes random activities with randfill: every field of ActivityRecord, including a
// field added later, gets values, so a field the encoder leaves out makes the comparison
// with encoding/json fail. The custom functions reach what randfill alone would not: empty
// strings and zero numbers (omitempty), strings encoding/json must escape or repair
// (control bytes, quotes, U+2028, invalid UTF-8), and times in any zone with nanoseconds.
func fill(seed int64) *randfill.Filler {
	return randfill.NewWithSeed(seed).NilChance(0.25).NumElements(0, 4).Funcs(
		fillString[string], fillString[v1alpha1.ActivityType], fillString[v1alpha1.Transport],
		func(p *int32, c randfill.Continue) { *p = int32(randomInt(c)) },
		func(p *int64, c randfill.Continue) { *p = randomInt(c) },
		func(p *metav1.MicroTime, c randfill.Continue) {
			if c.Intn(8) == 0 {
				*p = metav1.MicroTime{} // encoded as null
				return
			}
			// Years 1 to 9999, any nanosecond (the layout keeps microseconds), any offset.
			sec := c.Int63n(253402300800) - 62135596800
			zone := time.FixedZone("z", (c.Intn(28*60+1)-14*60)*60)
			*p = metav1.NewMicroTime(time.Unix(sec, c.Int63n(1e9)).In(zone))
		},
	)
}

// stringPieces are what encoding/json treats specially, or what a decoy's peers send.
var stringPieces = []string{
	`"`, `\`, "/", "<", ">", "&", "\b", "\f", "\n", "\r", "\t", "\x00", "\x1f", "\x7f",
	"\u2028", "\u2029", "\ufffd", "é", "→", "😀",
	"\xff", "\xfe", "\xc3", "\xe2\x82", "\xed\xa0\x80", "\xc0\x80", "\xf4\x90\x80\x80",
}

func fillString[T ~string](p *T, c randfill.Continue) {
	switch c.Intn(4) {
	case 0:
		*p = ""
	case 1:
		*p = T(c.String(0)) // randfill's own: valid UTF-8
	default:
		var b strings.Builder
		for range c.Intn(12) {
			switch c.Intn(3) {
			case 0:
				b.WriteString(stringPieces[c.Intn(len(stringPieces))])
			case 1:
				b.WriteByte(byte(c.Intn(256)))
			default:
				b.WriteString(c.String(6))
			}
		}
		*p = T(b.String())
	}
}

// randomInt is zero, small, or anywhere in the range of an int32 or int64 half the time each.
func randomInt(c randfill.Continue) int64 {
	switch c.Intn(4) {
	case 0:
		return 0
	case 1:
		return int64(c.Intn(2001) - 1000)
	case 2:
		return int64(int32(c.Uint32()))
	default:
		return int64(c.Uint64())
	}
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	const seeds, perSeed = 40, 200
	var buf []byte
	seen := map[string]bool{}
	for seed := range int64(seeds) {
		f := fill(seed)
		for i := range perSeed {
			var a v1alpha1.ActivityRecord
			f.Fill(&a)
			want := stdJSON(t, &a)
			buf = activity.AppendJSON(buf[:0], &a)
			if !bytes.Equal(buf, want) {
				t.Fatalf("seed %d, record %d:\n got %s\nwant %s", seed, i, buf, want)
			}
			// What the encoder wrote reads back into the type without unknown fields, and
			// the record read back (times in microseconds, invalid UTF-8 repaired) encodes
			// the same both ways too.
			var back v1alpha1.ActivityRecord
			dec := json.NewDecoder(bytes.NewReader(buf))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&back); err != nil {
				t.Fatalf("seed %d, record %d: decode %s: %v", seed, i, buf, err)
			}
			if got, want := activity.AppendJSON(nil, &back), stdJSON(t, &back); !bytes.Equal(got, want) {
				t.Fatalf("seed %d, record %d, read back:\n got %s\nwant %s", seed, i, got, want)
			}
			var doc any
			if err := json.Unmarshal(want, &doc); err != nil {
				t.Fatal(err)
			}
			fieldsIn(reflect.TypeFor[v1alpha1.ActivityRecord](), doc, "", seen)
		}
	}
	// Every field must have been written at least once, or the comparison proves nothing
	// about it (a type randfill cannot fill, a custom function that always leaves it empty).
	for _, p := range fieldsOf(reflect.TypeFor[v1alpha1.ActivityRecord](), "") {
		if !seen[p] {
			t.Errorf("field %s never appeared in %d random records", p, seeds*perSeed)
		}
	}
}

var marshaler = reflect.TypeFor[json.Marshaler]()

// jsonName is a struct field's JSON name, "" when it has none.
func jsonName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		name = f.Name
	}
	return name
}

// fieldsOf lists the JSON paths of every field under t ("input.text", "captures[].rule").
func fieldsOf(t reflect.Type, path string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Slice {
			path += "[]"
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t.Implements(marshaler) {
		return nil
	}
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := jsonName(f)
		if name == "" {
			continue
		}
		p := strings.TrimPrefix(path+"."+name, ".")
		out = append(out, p)
		out = append(out, fieldsOf(f.Type, p)...)
	}
	return out
}

// fieldsIn marks the paths of fieldsOf that the decoded JSON document v holds.
func fieldsIn(t reflect.Type, v any, path string, seen map[string]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Slice:
		items, _ := v.([]any)
		for _, item := range items {
			fieldsIn(t.Elem(), item, path+"[]", seen)
		}
	case t.Kind() == reflect.Struct && !t.Implements(marshaler):
		obj, _ := v.(map[string]any)
		for i := range t.NumField() {
			f := t.Field(i)
			name := jsonName(f)
			if fv, ok := obj[name]; ok && name != "" {
				p := strings.TrimPrefix(path+"."+name, ".")
				seen[p] = true
				fieldsIn(f.Type, fv, p, seen)
			}
		}
	}
}

// FuzzAppendJSON checks the equivalence for arbitrary strings and shapes, of AppendJSON
// with encoding/json and of AppendCanonicalJSON with evidence.CanonicalJSON, and that a
// record's hash is that of the record read back from its line.
func FuzzAppendJSON(f *testing.F) {
	f.Add(uint16(0xffff), "a\"\\\x01\xff\u2028", int32(-5))
	f.Add(uint16(0), "", int32(0))
	f.Add(uint16(0xffff), "\\ufffd \xfe\xef\xbf\xbd\xed\xa0\x80", int32(3))
	f.Fuzz(func(t *testing.T, bits uint16, s string, n int32) {
		a := record(bits, s, n)
		if got, want := activity.AppendJSON(nil, a), stdJSON(t, a); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
		if got, want := activity.AppendCanonicalJSON(nil, a), evidence.CanonicalJSON(nil, a); !bytes.Equal(got, want) {
			t.Fatalf("canonical:\n got %s\nwant %s", got, want)
		}
		// What verifying a log depends on: the hash sealed here is the hash of the record
		// read back from its line (where each invalid byte is U+FFFD).
		var back v1alpha1.ActivityRecord
		if json.Unmarshal(activity.AppendJSON(nil, a), &back) == nil { // times of years JSON cannot hold aside
			sealed := evidence.Hash(nil, a, activity.AppendCanonicalJSON)
			if read := evidence.Hash(nil, &back, evidence.CanonicalJSON); !bytes.Equal(sealed, read) {
				t.Fatalf("sealed %s, read back %s", sealed, read)
			}
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	a := record(0xffff&^(1<<11), "AUTH admin hunter2\r\n", 42)
	b.Run("AppendJSON", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = activity.AppendJSON(buf[:0], a)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		for b.Loop() {
			buf.Reset()
			_ = enc.Encode(a)
		}
	})
}
