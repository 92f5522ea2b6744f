package activity_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/activity"
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

// record builds an activity whose optional parts are chosen by bits and whose strings are s.
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

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	strs := []string{"", "plain", "q\"b\\s/", "<html>&", "\b\f\n\r\t\x00\x1f\x7f", "\xff\xfe bad utf8 \xc3", "é→✓ \u2028\u2029 😀"}
	for bits := range 1 << 16 {
		if bits%7 != 0 && bits != 1<<16-1 { // a spread of the 65536 shapes keeps this fast
			continue
		}
		s := strs[bits%len(strs)]
		a := record(uint16(bits), s, int32(rand.IntN(2000)-1000))
		want := stdJSON(t, a)
		if got := activity.AppendJSON(nil, a); !bytes.Equal(got, want) {
			t.Fatalf("shape %016b:\n got %s\nwant %s", bits, got, want)
		}
	}
}

// FuzzAppendJSON checks the equivalence for arbitrary strings and shapes.
func FuzzAppendJSON(f *testing.F) {
	f.Add(uint16(0xffff), "a\"\\\x01\xff\u2028", int32(-5))
	f.Add(uint16(0), "", int32(0))
	f.Fuzz(func(t *testing.T, bits uint16, s string, n int32) {
		a := record(bits, s, n)
		if got, want := activity.AppendJSON(nil, a), stdJSON(t, a); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
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
