package connector_test

import (
	"encoding/base64"
	"testing"

	"github.com/parley-dev/parley/api/v1alpha1"
)

func TestEncodings(t *testing.T) {
	utf16 := func(s string) string {
		var b []byte
		for _, r := range s {
			b = append(b, byte(r>>8), byte(r))
		}
		return string(b)
	}
	utf32 := func(s string) string {
		var b []byte
		for _, r := range s {
			b = append(b, byte(r>>24), byte(r>>16), byte(r>>8), byte(r))
		}
		return string(b)
	}
	cases := []struct {
		encoding, send, want, text string
	}{
		{"utf-8", "héllo", "→héllo", "héllo"},
		{"utf-16", utf16("héllo"), utf16("→héllo"), "héllo"},
		{"utf-16", "\xff\xfe" + "h\x00\xe9\x00l\x00l\x00o\x00", utf16("→héllo"), "héllo"}, // little-endian with a mark
		{"utf-32", utf32("héllo"), utf32("→héllo"), "héllo"},
		{"ascii", "h\xe9llo", "?h\uFFFDllo"[:1] + "h?llo", "h\uFFFDllo"},
		{"binary", "\x00\xffhello\x80", "?\x00\xffhello\x80", "\x00\u00ffhello\u0080"},
	}
	for _, tc := range cases {
		t.Run(tc.encoding, func(t *testing.T) {
			h := start(t, `
operation: {port: 1, encoding: `+tc.encoding+`}
memory: {connection: [{name: got, type: string}]}
conversation:
  rules: [{id: 1, mode: Sync, regex: "(?s).+", captures: [{regex: "(?s).+", variable: got}], response: "→{{got}}"}]
`)
			p := h.dial()
			p.exchange(tc.send, tc.want)
			in := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 1)[0]
			if in.Input.Text != tc.text || in.Input.Base64 != base64.StdEncoding.EncodeToString([]byte(tc.send)) {
				t.Errorf("input text %q base64 %q", in.Input.Text, in.Input.Base64)
			}
		})
	}
}

func TestBinaryRegexMatchesBytes(t *testing.T) {
	h := start(t, `
operation: {port: 1, encoding: binary}
memory: {connection: [{name: id, type: string}]}
conversation:
  rules:
  - id: 1
    mode: Sync
    regex: "^\\x10[\\x00-\\xff]"
    captures: [{regex: "^\\x10([\\x00-\\xff]{2})", variable: id}]
    responseBase64: true
    response: "IAJ7e2lkfX0="
`)
	// "IAJ7e2lkfX0=" is the bytes 20 02 followed by the text {{id}}
	h.dial().exchange("\x10\xfe\x01rest", "\x20\x02\xfe\x01")
}
