package rules_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

func TestFramingCompiles(t *testing.T) {
	p, errs := compileYAML(t, `
operation:
  port: 25
  maxInputSize: 512
  framing: {type: Delimiter, delimiter: "\r\n", maxFrameSize: 1000}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "^DATA", response: "354\r\n", framing: {type: Delimiter, delimiter: "\r\n.\r\n"}}
  - {id: 2, mode: Sync, regex: "^BIN", framing: {type: Delimiter, delimiter: "AAE=", delimiterBase64: true, maxFrameSize: 10}}
  - {id: 3, mode: Sync, regex: "^RAW", framing: {type: Read}}
  - {id: 4, mode: Sync, regex: "^LEN", framing: {type: Length, length: {offset: 1, size: 4, endian: Little, adjust: -3, fillReplies: true}}}
  - {id: 5, mode: Sync, regex: "^MQTT", framing: {type: Length, length: {offset: 1, format: MQTT}}}
  - {id: 6, mode: Sync, regex: "^REDIS", framing: {type: RESP}}
  - {id: 7, mode: Sync, regex: "^WEB", framing: {type: HTTP}}
  - {id: 8, mode: Sync, regex: "^DEF", framing: {type: Length, length: {}}}
`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	f := p.Framing
	if f == nil || f.Type != v1alpha1.FramingDelimiter || string(f.Delimiter) != "\r\n" || f.MaxFrameSize != 1000 {
		t.Fatalf("operation framing = %+v", f)
	}
	if !p.Reframes {
		t.Error("Reframes not set")
	}
	byID := map[int32]*rules.Framing{}
	for _, r := range p.Rules {
		byID[r.ID] = r.Framing
	}
	if f := byID[1]; string(f.Delimiter) != "\r\n.\r\n" || f.MaxFrameSize != 1000 {
		t.Errorf("rule 1 (inherits maxFrameSize 1000): %+v", f)
	}
	if f := byID[2]; !bytes.Equal(f.Delimiter, []byte{0, 1}) || f.MaxFrameSize != 10 {
		t.Errorf("rule 2 (base64 delimiter, own bound): %+v", f)
	}
	if f := byID[3]; f.Type != v1alpha1.FramingRead || f.MaxFrameSize != 512 {
		t.Errorf("rule 3 (Read: bounded by maxInputSize): %+v", f)
	}
	if l := byID[4].Length; *l != (rules.LengthField{Offset: 1, Size: 4, Little: true, Adjust: -3, FillReplies: true}) {
		t.Errorf("rule 4 length: %+v", l)
	}
	if l := byID[5].Length; *l != (rules.LengthField{Offset: 1, MQTT: true}) {
		t.Errorf("rule 5 length: %+v", l)
	}
	if byID[6].Type != v1alpha1.FramingRESP || byID[7].Type != v1alpha1.FramingHTTP {
		t.Errorf("rules 6, 7: %+v %+v", byID[6], byID[7])
	}
	if l := byID[8].Length; l.Size != 2 || l.Little || l.MQTT {
		t.Errorf("rule 8 (defaults: 2 bytes, big-endian): %+v", l)
	}
}

func TestFramingDefaults(t *testing.T) {
	p, errs := compileYAML(t, `{operation: {port: 1, framing: {type: Read}}, conversation: {rules: [{id: 1, mode: Sync, regex: x, framing: {type: RESP}}]}}`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if p.Framing != nil {
		t.Errorf("operation framing Read compiles to nil (today's read loop), got %+v", p.Framing)
	}
	if got := p.Rules[0].Framing.MaxFrameSize; got != rules.DefaultMaxFrameSize {
		t.Errorf("rule maxFrameSize = %d, want the default %d", got, rules.DefaultMaxFrameSize)
	}
	p, errs = compileYAML(t, `{operation: {port: 1}, conversation: {rules: [{id: 1, mode: Sync, regex: x}]}}`)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if p.Framing != nil || p.Reframes {
		t.Errorf("no framing: %+v %v", p.Framing, p.Reframes)
	}
}

func TestFramingErrors(t *testing.T) {
	cases := []struct {
		name, spec string
		want       []string // each must appear in one error, and no other error may be reported
	}{
		{"delimiter missing", `{operation: {port: 1, framing: {type: Delimiter}}}`,
			[]string{"spec.operation.framing.delimiter: Required value"}},
		{"delimiter bad base64", `{operation: {port: 1, framing: {type: Delimiter, delimiter: "***", delimiterBase64: true}}}`,
			[]string{`spec.operation.framing.delimiter: Invalid value: "***": not valid base64`}},
		{"delimiter longer than the bound", `{operation: {port: 1, framing: {type: Delimiter, delimiter: "abcd", maxFrameSize: 3}}}`,
			[]string{`spec.operation.framing.delimiter: Invalid value: "abcd": is longer than maxFrameSize (3 bytes)`}},
		{"unknown type", `{operation: {port: 1, framing: {type: Lines}}}`,
			[]string{`spec.operation.framing.type: Unsupported value: "Lines"`}},
		{"length missing", `{operation: {port: 1, framing: {type: Length}}}`,
			[]string{"spec.operation.framing.length: Required value"}},
		{"length field values", `{operation: {port: 1, framing: {type: Length, length: {offset: -1, size: 3, endian: Middle}}}}`,
			[]string{"spec.operation.framing.length.offset: Invalid value: -1", `spec.operation.framing.length.size: Unsupported value: 3`,
				`spec.operation.framing.length.endian: Unsupported value: "Middle"`}},
		{"length format", `{operation: {port: 1, framing: {type: Length, length: {format: Varint}}}}`,
			[]string{`spec.operation.framing.length.format: Unsupported value: "Varint"`}},
		{"mqtt sizes itself", `{operation: {port: 1, framing: {type: Length, length: {format: MQTT, size: 2, endian: Little}}}}`,
			[]string{"spec.operation.framing.length.size: Forbidden", "spec.operation.framing.length.endian: Forbidden"}},
		{"length field past the bound", `{operation: {port: 1, framing: {type: Length, maxFrameSize: 8, length: {offset: 5, size: 4}}}}`,
			[]string{"spec.operation.framing.length.offset: Invalid value: 5: the length field ends at byte 9, past maxFrameSize (8)"}},
		{"maxFrameSize range", `{operation: {port: 1, framing: {type: RESP, maxFrameSize: 0}}, conversation: {rules: [{id: 1, mode: Sync, regex: x, framing: {type: HTTP, maxFrameSize: 16777217}}]}}`,
			[]string{"spec.operation.framing.maxFrameSize: Invalid value: 0", "spec.conversation.rules[0].framing.maxFrameSize: Invalid value: 16777217"}},
		{"fields of other types", `{operation: {port: 1, framing: {type: RESP, delimiter: "x", delimiterBase64: true, length: {size: 2}}}}`,
			[]string{"spec.operation.framing.delimiter: Forbidden: does not belong to RESP framing",
				"spec.operation.framing.delimiterBase64: Forbidden", "spec.operation.framing.length: Forbidden: does not belong to RESP framing"}},
		{"Read is bounded by maxInputSize", `{operation: {port: 1, framing: {type: Read, maxFrameSize: 10}}}`,
			[]string{"spec.operation.framing.maxFrameSize: Forbidden: Read framing takes at most operation.maxInputSize bytes per input"}},
		{"UDP refuses framing", `
operation: {port: 1, transport: UDP, framing: {type: Delimiter, delimiter: "\n"}}
conversation:
  rules: [{id: 1, mode: Sync, regex: x, framing: {type: Read}}]
  groups: [{id: g, rules: [{id: 2, mode: Sync, regex: y, framing: {type: RESP}}]}]`,
			[]string{"spec.operation.framing: Forbidden: framing cuts a TCP byte stream", "spec.conversation.rules[0].framing: Forbidden",
				"spec.conversation.groups[0].rules[0].framing: Forbidden"}},
		{"rule framing errors", `{operation: {port: 1}, conversation: {rules: [{id: 1, mode: Sync, regex: x, framing: {type: Length, length: {size: 16}}}]}}`,
			[]string{"spec.conversation.rules[0].framing.length.size: Unsupported value: 16"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := compileYAML(t, tc.spec)
			all := strings.Join(errs, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("missing %q in:\n%s", w, all)
				}
			}
			if len(errs) != len(tc.want) {
				t.Errorf("got %d errors, want %d:\n%s", len(errs), len(tc.want), all)
			}
		})
	}
}
