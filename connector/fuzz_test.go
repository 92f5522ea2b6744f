package connector

import (
	"net/netip"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/rules"
)

// discardSocket stands in for a peer socket in the fuzz harness, which exercises the input
// path (decode, match, capture, operate, render) without the network; the loopback tests
// cover the sockets themselves.
type discardSocket struct{ sent int }

func (d *discardSocket) send(buf []byte, _ []int) (int, error) {
	d.sent += len(buf)
	return len(buf), nil
}
func (d *discardSocket) close()                 {}
func (d *discardSocket) closedByUs() bool       { return false }
func (d *discardSocket) remote() netip.AddrPort { return netip.MustParseAddrPort("192.0.2.7:4242") }

type discardSink struct{}

func (discardSink) Write([]*v1alpha1.ActivityRecord) error { return nil }

// fuzzRules use every kind of step a hostile input can reach.
const fuzzRules = `
operation: {port: 1, maxInputSize: 4096, reportMemory: true}
memory:
  global: [{name: total, type: int, report: true}]
  connection:
  - {name: s, report: true}
  - {name: i, type: int}
  - {name: f, type: float}
  - {name: b, type: bool}
  - {name: parts, type: string}
conversation:
  greetings: {value: "hi {{IP}}:{{PORT}}\r\n"}
  default: {value: "? {{s}}\r\n"}
  empty: {value: "empty\r\n"}
  rules:
  - {id: 1, mode: Sync, regex: "(?i)num (\\S+)", captures: [{regex: "(?i)num (\\S+)", variable: i}, {regex: "(?i)num (\\S+)", variable: f}], operation: {name: NBR_SUM, inputs: [i, f, total], outputs: [total]}, response: "{{i}} {{f}} {{total}}\r\n"}
  - {id: 2, mode: Sync, regex: "(?s)(.*)", captures: [{regex: "(?s)(.*)", variable: s}], operation: {name: STR_CONCAT, inputs: [s, s, EXT_IN], outputs: [s]}}
  - {id: 3, mode: Sync, regex: "split", operation: {name: STR_SPLIT, inputs: [EXT_IN, " "], outputs: [parts, s]}, trigger: [{ruleID: 5}]}
  - {id: 4, mode: Hybrid, regex: "b64", operation: {name: STR_DECODE_B64, inputs: [EXT_IN], outputs: [s]}, response: "{{s}}"}
  - {id: 5, mode: Async, operation: {name: NBR_MEDIAN_GROUPED, inputs: [i, f, "3"], outputs: [f]}, asyncSwitch: {options: [{conditions: [{variable: b, value: "true"}], trigger: [{ruleID: 4}]}]}}
  - {id: 6, mode: Sync, regex: "bool (\\w+)", captures: [{regex: "bool (\\w+)", variable: b}], operation: {name: LGC_XOR, inputs: [b, "true", EXT_IN], outputs: [b]}}
  groups:
  - {id: g, regex: "^G", rules: [{id: 7, mode: Sync, regex: "(\\d+)", operation: {name: STR_REPLACE, inputs: [EXT_IN, "\\d", "$0$0"], outputs: [s]}, response: "{{s}}"}]}
`

// FuzzInput drives arbitrary bytes through a conversation in every encoding: no panic, and
// memory stays bounded. Seeds: testdata/fuzz/FuzzInput.
func FuzzInput(f *testing.F) {
	for _, s := range []string{"num 3\r\n", "num 1e308", "NUM -9223372036854775808", "split a b c", "b64 aGk=", "bool true", "G123", "\r\n", "\xff\xfe\x00", ""} {
		f.Add([]byte(s), uint8(0))
	}
	encodings := []v1alpha1.Encoding{"utf-8", "utf-16", "utf-32", "ascii", "binary"}
	progs := make([]*rules.Program, len(encodings))
	for i, enc := range encodings {
		var spec v1alpha1.ConversationRulesSpec
		if err := yaml.UnmarshalStrict([]byte(fuzzRules), &spec); err != nil {
			f.Fatal(err)
		}
		spec.Operation.Encoding = enc
		prog, errs := rules.Compile("fuzz", 1, &spec)
		if len(errs) > 0 {
			f.Fatal(errs.ToAggregate())
		}
		progs[i] = prog
	}
	f.Fuzz(func(t *testing.T, input []byte, which uint8) {
		prog := progs[int(which)%len(progs)]
		reg := activity.NewRegister(discardSink{}, 1<<16, nil)
		c, err := New(prog, Options{Name: "fuzz", Register: reg})
		if err != nil {
			t.Fatal(err)
		}
		s := &discardSocket{}
		g := c.current.Load()
		cv := c.newConversation(g, s.remote(), "")
		cv.socks = []socket{s}
		cv.mu.Lock()
		cv.start(s, false, "")
		for range 3 { // repeated inputs grow memory through STR_CONCAT
			cv.handleInput(s, input[:min(len(input), prog.MaxInputSize)], false)
		}
		cv.finish(v1alpha1.ActivityEnded, "fuzz done", prog.Ending)
		cv.unlock()
		for i, v := range cv.mem {
			if n := len(v.String()); n > maxValueBytes+64 {
				t.Fatalf("variable %s holds %d bytes", prog.Connection[i].Name, n)
			}
		}
	})
}
