package activityjson

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/activity"
)

// connectorJSON is a as the connector sends it.
func connectorJSON(a *v1alpha1.ActivityRecord) []byte {
	b := activity.AppendJSON(nil, a)
	return b[:len(b)-1]
}

func sampleActivity() *v1alpha1.ActivityRecord {
	return &v1alpha1.ActivityRecord{Connector: "redis-decoy", Time: metav1.MicroTime{Time: time.Date(2026, 11, 21, 10, 0, 0, 123456000, time.UTC)},
		Type:       v1alpha1.ActivityInput,
		Connection: &v1alpha1.ConnectionRef{ID: "c-000042", Peer: "203.0.113.9:51122", Transport: v1alpha1.TransportTCP},
		Input:      &v1alpha1.InputRecord{Text: "AUTH \"admin\" \xff<&>\r\n", Bytes: 6},
		Rules:      &v1alpha1.RulesRecord{Executed: []int32{1, -2}, Async: []int32{7}, Scheduled: []int32{9}, Basic: "default"},
		Output:     &v1alpha1.OutputRecord{Text: "+OK\r\n", Bytes: 5},
		Memory:     &v1alpha1.MemorySnapshot{Global: map[string]string{"a": "b"}},
		Alert:      true, Message: "line\nbreak",
		Evidence: &v1alpha1.EvidenceRecord{Chain: "3f9a1c07d2b4e851", Seq: 42, PrevHash: "sha256:00", Hash: "sha256:01"}}
}

// head is what DecodeHead reads of a fully decoded record.
func head(a *v1alpha1.ActivityRecord) (v1alpha1.ActivityRecord, int) {
	fired := 0
	if a.Rules != nil {
		fired = len(a.Rules.Executed) + len(a.Rules.Async)
	}
	return v1alpha1.ActivityRecord{Connector: a.Connector, Time: a.Time, Type: a.Type, Alert: a.Alert, Evidence: a.Evidence}, fired
}

// What DecodeHead reads is what encoding/json decodes, for what the connector writes; what
// it does not take (another form, or invalid) it leaves to encoding/json.
func TestDecodeHead(t *testing.T) {
	full := sampleActivity()
	bare := &v1alpha1.ActivityRecord{Connector: "c", Type: v1alpha1.ActivityConnected}
	for name, tc := range map[string]struct {
		raw  string
		want bool
	}{
		"the connector's, every field":  {string(connectorJSON(full)), true},
		"the connector's, few fields":   {string(connectorJSON(bare)), true},
		"spaces":                        {`{ "connector" : "c" , "type" : "Connected" , "rules" : { "executed" : [ 1 , 2 ] } }`, true},
		"spaces around the object":      {` {"connector":"c"} `, false},
		"a line break between tokens":   {"{\"connector\":\"c\",\n\"type\":\"Connected\"}", false},
		"no connector":                  {`{"type":"Connected"}`, false},
		"empty connector":               {`{"connector":"","type":"Connected"}`, false},
		"a key twice":                   {`{"connector":"a","connector":"b"}`, false},
		"a key in another case":         {`{"connector":"a","Alert":true}`, false},
		"an escaped key":                {`{"connector":"a","\u0061lert":true}`, false},
		"an unknown key":                {`{"connector":"a","extra":1}`, false},
		"an escaped connector":          {`{"connector":"\u0061"}`, false},
		"alert not a boolean":           {`{"connector":"a","alert":"yes"}`, false},
		"alert null":                    {`{"connector":"a","alert":null}`, false},
		"seq not a number":              {`{"connector":"a","evidence":{"seq":"1"}}`, false},
		"seq negative":                  {`{"connector":"a","evidence":{"seq":-1}}`, false},
		"an evidence key twice":         {`{"connector":"a","evidence":{"seq":1,"seq":2}}`, false},
		"a rule not an int32":           {`{"connector":"a","rules":{"executed":[1.5]}}`, false},
		"a rule too large":              {`{"connector":"a","rules":{"executed":[2147483648]}}`, false},
		"a time not RFC 3339":           {`{"connector":"a","time":"yesterday"}`, false},
		"not UTF-8":                     {"{\"connector\":\"a\",\"message\":\"\xff\"}", false},
		"not JSON":                      {`{"connector":"a"`, false},
		"not an object":                 {`["connector"]`, false},
		"null fields the engine reads":  {`{"connector":"a","time":null,"rules":null,"evidence":null}`, true},
		"other fields are only skipped": {`{"connector":"a","input":{"x":[{"y":"}]\""}]},"memory":null}`, true},
	} {
		t.Run(name, func(t *testing.T) {
			var h v1alpha1.ActivityRecord
			fired, ok := DecodeHead([]byte(tc.raw), &h)
			if ok != tc.want {
				t.Fatalf("DecodeHead %v, want %v", ok, tc.want)
			}
			if !ok {
				return
			}
			var a v1alpha1.ActivityRecord
			if err := json.Unmarshal([]byte(tc.raw), &a); err != nil {
				return // a field DecodeHead does not read is not what its type says
			}
			if want, wantFired := head(&a); !reflect.DeepEqual(h, want) || fired != wantFired {
				t.Errorf("DecodeHead %+v (fired %d)\nencoding/json %+v (fired %d)", h, fired, want, wantFired)
			}
		})
	}
}

// FuzzDecodeHead: on any input DecodeHead takes, it agrees with encoding/json.
func FuzzDecodeHead(f *testing.F) {
	f.Add(connectorJSON(sampleActivity()))
	f.Add(connectorJSON(&v1alpha1.ActivityRecord{Connector: "c", Type: v1alpha1.ActivityConnected}))
	f.Add([]byte(`{"connector":"a","rules":{"executed":[1,2],"async":[]},"evidence":{"chain":"x","seq":3}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var h v1alpha1.ActivityRecord
		fired, ok := DecodeHead(raw, &h)
		if !ok {
			return
		}
		var a v1alpha1.ActivityRecord
		if err := json.Unmarshal(raw, &a); err != nil {
			return
		}
		if want, wantFired := head(&a); !reflect.DeepEqual(h, want) || fired != wantFired {
			t.Fatalf("%q:\nDecodeHead %+v (fired %d)\nencoding/json %+v (fired %d)", raw, h, fired, want, wantFired)
		}
	})
}

func BenchmarkDecodeActivity(b *testing.B) {
	a := sampleActivity()
	a.Alert, a.Message, a.Memory = false, "", nil
	raw := connectorJSON(a)
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			var rec v1alpha1.ActivityRecord
			if err := json.Unmarshal(raw, &rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DecodeHead", func(b *testing.B) {
		for b.Loop() {
			var rec v1alpha1.ActivityRecord
			if _, ok := DecodeHead(raw, &rec); !ok {
				b.Fatal("not taken")
			}
		}
	})
}

// A property of random records as the connector writes them: DecodeHead takes each whose
// fields it reads are as the connector writes them (the engine's fast path is not lost to
// some value of a field it skips), and what it takes it reads exactly as encoding/json
// decodes the whole. Fixed seeds: a failure names its record.
func TestDecodeHeadAgreesOnRandomRecords(t *testing.T) {
	types := []v1alpha1.ActivityType{v1alpha1.ActivityConnectorStarted, v1alpha1.ActivityConnected, v1alpha1.ActivityGreeted,
		v1alpha1.ActivityInput, v1alpha1.ActivityAsync, v1alpha1.ActivityRejected, v1alpha1.ActivityTimedOut,
		v1alpha1.ActivityEnded, v1alpha1.ActivityBroken, v1alpha1.ActivityError, v1alpha1.ActivityConnectorStopped}
	for seed := range uint64(2000) {
		r := rand.New(rand.NewPCG(seed, 1))
		text := func() string { // any bytes: quotes, escapes, controls, invalid UTF-8, U+2028
			pieces := []string{"a", "\"", "\\", "\n", "\r", "\t", "\x00", "\x1f", "\xff", "é", "\u2028", "<&>", "}", "]", ",", ":", "{\"k\":1}"}
			var b strings.Builder
			for range r.IntN(12) {
				b.WriteString(pieces[r.IntN(len(pieces))])
			}
			return b.String()
		}
		ints := func() []int32 {
			var v []int32
			for range r.IntN(4) {
				v = append(v, int32(r.Uint32()))
			}
			return v
		}
		name := func() string { // a Kubernetes name, as connectors are named
			const letters = "abcdefghijklmnopqrstuvwxyz0123456789-"
			b := []byte{'a' + byte(r.IntN(26))}
			for range r.IntN(20) {
				b = append(b, letters[r.IntN(len(letters))])
			}
			return string(b)
		}
		a := &v1alpha1.ActivityRecord{Connector: name(), Type: types[r.IntN(len(types))], Alert: r.IntN(2) == 0, Message: text()}
		if r.IntN(4) > 0 {
			a.Time = metav1.MicroTime{Time: time.Unix(r.Int64N(1<<33), r.Int64N(1e9)).UTC().Truncate(time.Microsecond)}
		}
		if r.IntN(2) == 0 {
			a.Connection = &v1alpha1.ConnectionRef{ID: text(), Peer: text(), Transport: v1alpha1.TransportUDP}
		}
		if r.IntN(2) == 0 {
			a.Input = &v1alpha1.InputRecord{Text: text(), Bytes: r.Int32()}
		}
		if r.IntN(2) == 0 {
			a.Rules = &v1alpha1.RulesRecord{Executed: ints(), Async: ints(), Scheduled: ints(), Basic: text()}
		}
		if r.IntN(2) == 0 {
			a.Output = &v1alpha1.OutputRecord{Text: text(), Bytes: r.Int32()}
		}
		if r.IntN(3) == 0 {
			a.Memory = &v1alpha1.MemorySnapshot{Global: map[string]string{text(): text()}}
		}
		// The fields DecodeHead reads hold what the connector writes there (plain strings),
		// but now and then one with escapes, which DecodeHead may leave to encoding/json.
		plain := true
		if r.IntN(2) == 0 {
			a.Evidence = &v1alpha1.EvidenceRecord{Chain: name(), Seq: r.Uint64(), PrevHash: "sha256:" + name(), Hash: "sha256:" + name()}
			if r.IntN(8) == 0 {
				a.Evidence.PrevHash, plain = text(), false
			}
		}
		raw := connectorJSON(a)
		var h v1alpha1.ActivityRecord
		fired, ok := DecodeHead(raw, &h)
		if !ok {
			if plain {
				t.Fatalf("seed %d: DecodeHead does not take the connector's %s", seed, raw)
			}
			continue
		}
		var full v1alpha1.ActivityRecord
		if err := json.Unmarshal(raw, &full); err != nil {
			t.Fatalf("seed %d: %s: %v", seed, raw, err)
		}
		if want, wantFired := head(&full); !reflect.DeepEqual(h, want) || fired != wantFired {
			t.Fatalf("seed %d: %s\nDecodeHead %+v (fired %d)\nencoding/json %+v (fired %d)", seed, raw, h, fired, want, wantFired)
		}
	}
}
