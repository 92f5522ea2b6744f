package connector_test

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// wantOutput checks that an activity records sent as what went out: its byte count, its
// bytes in base64 and its text, uncut.
func wantOutput(t *testing.T, a *v1alpha1.ActivityRecord, sent string) {
	t.Helper()
	o := a.Output
	if o == nil {
		t.Errorf("%s activity has no output; want %q", a.Type, sent)
		return
	}
	if o.Bytes != int32(len(sent)) || o.Text != sent || o.Base64 != base64.StdEncoding.EncodeToString([]byte(sent)) || o.Truncated {
		t.Errorf("%s activity output %+v; want %q", a.Type, *o, sent)
	}
}

// Every kind of reply is recorded as it was written: the greeting, a sync reply (the
// replies of every rule that fired, in order), a basic rule, an async reply, and what the
// timeout sends before closing.
func TestOutputsRecordWhatWasSent(t *testing.T) {
	h := start(t, `
operation: {port: 1, interactionTimeout: 500ms}
memory: {connection: [{name: user, type: string, default: "nobody"}]}
conversation:
  greetings: {value: "+OK ready\r\n"}
  default: {value: "-ERR\r\n"}
  timeout: {value: "timeout\r\n"}
  ending: {value: "bye\r\n"}
  rules:
  - {id: 1, mode: Sync, regex: "^USER", captures: [{regex: "USER (\\w+)", variable: user}], response: "+OK {{user}}\r\n"}
  - {id: 2, mode: Sync, regex: "USER", response: "+MORE\r\n", trigger: [{ruleID: 3}]}
  - {id: 3, mode: Async, response: "later, {{user}}\n"}
  - {id: 4, mode: Sync, regex: "^SILENT"}
`)
	p := h.dial()
	p.expect("+OK ready\r\n")
	p.exchange("USER root\r\n", "+OK root\r\n+MORE\r\nlater, root\n")
	p.exchange("WHAT\r\n", "-ERR\r\n")
	h.quiet(p, "SILENT\r\n", 3)
	if rest := p.expectClosed(); rest != "timeout\r\nbye\r\n" {
		t.Fatalf("before the close: %q", rest)
	}

	wantOutput(t, h.Activities.WaitFor(t, v1alpha1.ActivityGreeted, 1)[0], "+OK ready\r\n")
	in := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 3)
	wantOutput(t, in[0], "+OK root\r\n+MORE\r\n")
	wantOutput(t, in[1], "-ERR\r\n")
	if o := in[2].Output; o == nil || *o != (v1alpha1.OutputRecord{}) {
		t.Errorf("a rule without a response: output %+v, want {bytes: 0} alone", o)
	}
	wantOutput(t, h.Activities.WaitFor(t, v1alpha1.ActivityAsync, 1)[0], "later, root\n")
	wantOutput(t, h.Activities.WaitFor(t, v1alpha1.ActivityTimedOut, 1)[0], "timeout\r\nbye\r\n")
}

// An ending rule's activity records its reply, and the Ended one what ending sent.
func TestOutputOfAnEnding(t *testing.T) {
	h := start(t, `
operation: {port: 1}
conversation:
  ending: {value: "221 bye\r\n"}
  rules: [{id: 1, mode: Sync, regex: "QUIT", response: "goodbye;", ending: true}]
`)
	p := h.dial()
	p.send("QUIT\r\n")
	if got := p.expectClosed(); got != "goodbye;221 bye\r\n" {
		t.Fatalf("got %q", got)
	}
	wantOutput(t, h.Activities.WaitFor(t, v1alpha1.ActivityInput, 1)[0], "goodbye;")
	wantOutput(t, h.Activities.WaitFor(t, v1alpha1.ActivityEnded, 1)[0], "221 bye\r\n")
}

// A reply longer than maxInputSize is recorded up to maxInputSize bytes, as an input would
// be, and marked truncated; bytes keeps the count written.
func TestOutputRecordCappedAtMaxInputSize(t *testing.T) {
	long := strings.Repeat("0123456789", 5) + "\r\n"
	h := start(t, `
operation: {port: 1, maxInputSize: 16}
conversation:
  greetings: {value: "0123456789abcdef"}
  rules: [{id: 1, mode: Sync, regex: "LONG", response: "`+strings.ReplaceAll(long, "\r\n", `\r\n`)+`"}]
`)
	p := h.dial()
	p.expect("0123456789abcdef")
	p.exchange("LONG", long)
	g := h.Activities.WaitFor(t, v1alpha1.ActivityGreeted, 1)[0]
	wantOutput(t, g, "0123456789abcdef") // exactly the cap: whole, not truncated
	o := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 1)[0].Output
	want := v1alpha1.OutputRecord{
		Bytes: int32(len(long)), Text: long[:16], Base64: base64.StdEncoding.EncodeToString([]byte(long[:16])), Truncated: true,
	}
	if o == nil || *o != want {
		t.Errorf("output %+v, want %+v", o, want)
	}
}

// Text is decoded with the conversation's encoding, as inputs are (utf-8 keeps invalid
// bytes as they are; with binary, byte n is U+00nn); base64 has the bytes.
func TestOutputTextDecodedAsInputs(t *testing.T) {
	for _, tc := range []struct{ encoding, send, wire, text string }{
		{"utf-8", "h\xffi", "→h\xffi", "→h\xffi"},
		{"utf-16", "\x00h\x00\xe9", "\x21\x92\x00h\x00\xe9", "→hé"},
		{"ascii", "hi", "?hi", "?hi"},
		{"binary", "\x10\x00\xff", "?\x10\x00\xff", "?\x10\x00\u00ff"},
	} {
		t.Run(tc.encoding, func(t *testing.T) {
			h := start(t, `
operation: {port: 1, encoding: `+tc.encoding+`}
memory: {connection: [{name: got, type: string}]}
conversation:
  rules: [{id: 1, mode: Sync, regex: "(?s).+", captures: [{regex: "(?s).+", variable: got}], response: "→{{got}}"}]
`)
			h.dial().exchange(tc.send, tc.wire)
			o := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 1)[0].Output
			want := v1alpha1.OutputRecord{
				Bytes: int32(len(tc.wire)), Text: tc.text, Base64: base64.StdEncoding.EncodeToString([]byte(tc.wire)),
			}
			if o == nil || *o != want {
				t.Errorf("output %+v, want %+v", o, want)
			}
		})
	}
}

// Over UDP the record holds what the amplification guard let out, not what the rules made.
func TestOutputRecordAfterUDPGuard(t *testing.T) {
	h := start(t, `
operation: {port: 1, transport: UDP}
conversation:
  greetings: {value: "hi"}
  rules: [{id: 1, mode: Sync, regex: "Q", response: "0123456789"}]
`)
	u := h.dialUDP()
	u.send("Q") // 1 byte in: the 2-byte greeting goes, the 10-byte reply would amplify
	u.expect("hi")
	u.expectNothing(300 * time.Millisecond)
	wantOutput(t, h.Activities.WaitFor(t, v1alpha1.ActivityGreeted, 1)[0], "hi")
	in := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 1)[0]
	if o := in.Output; o == nil || *o != (v1alpha1.OutputRecord{}) || !strings.Contains(in.Message, "amplification guard") {
		t.Errorf("guarded reply: output %+v, message %q", o, in.Message)
	}
	u.send("QQQQ") // 5 bytes in over the window: 15 may go out, 2 have
	u.expect("0123456789")
	wantOutput(t, h.Activities.WaitFor(t, v1alpha1.ActivityInput, 2)[1], "0123456789")
}

// A reply written in two parts, before and after a rule's reconnectBefore, is recorded as
// one output on the input's activity.
func TestOutputRecordJoinsWritesAroundReconnect(t *testing.T) {
	tg := newTarget(t, func(line string) (string, bool) {
		if line == "ONE" {
			return "NEXT\n", false
		}
		return "", false
	})
	h := start(t, fmt.Sprintf(`
operation: {mode: Client, ip: 127.0.0.1, port: %d, maxConcurrentConnections: 1, interactionTimeout: 2s}
conversation:
  greetings: {value: "ONE\n"}
  rules:
  - {id: 1, mode: Sync, regex: "NEXT", response: "TWO\n"}
  - {id: 2, mode: Sync, regex: "NEXT", reconnectBefore: true, response: "THREE\n", ending: true}
`, tg.port()))
	if err := h.Wait(); err != nil {
		t.Fatal(err)
	}
	// The target reads each connection on its own: lines of two connections come in any order.
	if conns, lines := tg.settled(t, 3); conns != 2 || !slices.Equal(slices.Sorted(slices.Values(lines)), []string{"ONE", "THREE", "TWO"}) {
		t.Errorf("%d connections, lines %v", conns, lines)
	}
	wantOutput(t, h.Activities.WaitFor(t, v1alpha1.ActivityInput, 1)[0], "TWO\nTHREE\n")
}
