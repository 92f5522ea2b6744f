package connector_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// A rule's when must hold as well as its conditions; it reads captures, memory and the peer.
func TestExprWhen(t *testing.T) {
	h := start(t, `
operation: {port: 1}
memory:
  connection: [{name: bid, type: int}, {name: best, type: int, default: "10"}]
conversation:
  default: {value: "LOW\r\n"}
  rules:
  - id: 1
    mode: Sync
    regex: "^BID (\\d+)"
    captures: [{regex: "^BID (\\d+)", variable: bid}]
    when: "bid > best && peer.ip.startsWith('127.') && conn.inputs >= 1"
    updates: [{variable: best, expr: "math.greatest(best, bid)"}]
    response: "BEST {{best}}\r\n"
`)
	p := h.dial()
	p.exchange("BID 5\r\n", "LOW\r\n")
	p.exchange("BID 12\r\n", "BEST 10\r\n") // updates run after the reply (Executed)
	p.exchange("BID 11\r\n", "LOW\r\n")
	p.exchange("BID 13\r\n", "BEST 12\r\n")
	in := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 4)
	if got := ids(in[1].Rules.Executed); got != "[1]" {
		t.Errorf("BID 12 executed %s", got)
	}
	if in[2].Rules.Basic != "default" {
		t.Errorf("BID 11: %+v", in[2].Rules)
	}
}

// A when is checked again when an async rule runs, with no input. Rule 4, scheduled after
// rule 3 by the same input, shows that rule 3's run is over when its reply arrives.
func TestExprWhenInAsyncRuns(t *testing.T) {
	h := start(t, `
operation: {port: 1}
memory: {connection: [{name: armed, type: bool}]}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "^ARM", updates: [{variable: armed, value: "true"}], response: "armed\r\n"}
  - {id: 2, mode: Sync, regex: "^GO", response: "go\r\n", trigger: [{ruleID: 3}, {ruleID: 4}]}
  - {id: 3, mode: Async, when: "armed && input == ''", response: "fired {{= conn.inputs }}\r\n"}
  - {id: 4, mode: Async, response: "tick\r\n"}
`)
	p := h.dial()
	p.exchange("GO\r\n", "go\r\ntick\r\n") // rule 3 ran, unarmed: it did not fire
	p.exchange("ARM\r\n", "armed\r\n")
	p.exchange("GO\r\n", "go\r\nfired 3\r\ntick\r\n")
	runs := 0
	for _, a := range h.Activities.WaitFor(t, v1alpha1.ActivityAsync, 3) {
		if ids(a.Rules.Async) == "[3]" {
			runs++
		}
	}
	if runs != 1 {
		t.Errorf("rule 3 ran %d times with a reply, want once", runs)
	}
}

// updates[].expr: the result is converted to the variable's type as a capture's text is.
func TestExprUpdatesConvertLikeCaptures(t *testing.T) {
	h := start(t, `
operation: {port: 1, memoryUpdateWhen: Detected}
memory:
  connection:
  - {name: num, type: int}
  - {name: f, type: float}
  - {name: b, type: bool}
  - {name: s}
conversation:
  rules:
  - id: 1
    mode: Sync
    regex: "^SET"
    updates:
    - {variable: num, expr: "'12abc'"}
    - {variable: f, expr: "7"}
    - {variable: b, expr: "'TRUE'"}
    - {variable: s, expr: "hex(raw.slice(0, 3))"}
    response: "{{num}} {{f}} {{b}} {{s}}\r\n"
`)
	h.dial().exchange("SET\r\n", "12 7.0 true 534554\r\n")
}

// {{= }} pieces in responses and in basic rules, with the Parley library.
func TestExprTemplates(t *testing.T) {
	h := start(t, `
operation: {port: 1}
memory: {global: [{name: hits, type: int, default: "41"}]}
conversation:
  greetings: {value: "hello {{= peer.ip }} #{{= hits + 1 }}\r\n"}
  default: {value: "{{= hex(sha256(input.trim())) }}\r\n"}
  rules:
  - {id: 1, mode: Sync, regex: "^LEN", response: "{{= input.size() }} {{= crc32('123456789') }}\r\n"}
`)
	p := h.dial()
	p.expect("hello 127.0.0.1 #42\r\n")
	p.exchange("LEN\r\n", "5 3421780262\r\n")
	sum := sha256.Sum256([]byte("abc"))
	p.exchange("abc\r\n", hex.EncodeToString(sum[:])+"\r\n")
}

// transform.input rewrites each input before the rules see it (the activity keeps what the
// peer sent); transform.output rewrites each reply, the basic ones included.
func TestExprTransforms(t *testing.T) {
	h := start(t, `
operation:
  port: 1
  transform: {input: "input.trim().lowerAscii()", output: "output.upperAscii() + '.'"}
conversation:
  greetings: {value: "hi"}
  default: {value: "what"}
  rules:
  - {id: 1, mode: Sync, regex: "^ping$", response: "pong [{{= input }}]"}
`)
	p := h.dial()
	p.expect("HI.")
	p.exchange("  PiNG\r\n", "PONG [PING].") // the output transform saw the rendered reply
	p.exchange("PONG\r\n", "WHAT.")
	in := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 2)
	if in[0].Input.Text != "  PiNG\r\n" || in[0].Output.Text != "PONG [PING]." {
		t.Errorf("input %q, output %q", in[0].Input.Text, in[0].Output.Text)
	}
}

// A reply rewritten into bytes goes out as those bytes: a binary length prefix.
func TestExprTransformOutputBytes(t *testing.T) {
	h := start(t, `
operation: {port: 1, encoding: binary, transform: {output: "be16(output.size()) + b'|' + bytes(output)"}}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "^A", response: "abc"}
`)
	h.dial().exchange("A", "\x00\x03|abc")
}

// A run-time failure is an Error activity with the expression's field path and reason, and
// the rule's other effects follow the documented order: a failed when does not fire its
// rule, a failed update leaves its variable unchanged (the next update still runs), a failed
// piece is empty, a failed transform leaves the input or reply as it was.
func TestExprRuntimeErrors(t *testing.T) {
	h := start(t, `
operation:
  port: 1
  memoryUpdateWhen: Detected
  transform: {input: "input.startsWith('x') ? string(unhex('zz')) : input", output: "output.endsWith('!') ? string(fromBE(b'')) : output"}
memory: {connection: [{name: num, type: int, default: "5"}, {name: m, type: int}]}
conversation:
  default: {value: "default\r\n"}
  rules:
  - {id: 1, mode: Sync, regex: "^DIV", when: "10 / (num - 5) > 0", response: "never\r\n"}
  - id: 2
    mode: Sync
    regex: "^UPD"
    updates: [{variable: num, expr: "num / 0"}, {variable: m, expr: "num + 1"}]
    response: "[{{= 1 / 0 }}] {{num}} {{m}}\r\n"
  - {id: 3, mode: Sync, regex: "^xIN", response: "raw input\r\n"}
  - {id: 4, mode: Sync, regex: "^OUT", response: "loud!"}
`)
	p := h.dial()
	p.exchange("DIV\r\n", "default\r\n")
	p.exchange("UPD\r\n", "[] 5 6\r\n")
	p.exchange("xIN\r\n", "raw input\r\n")
	p.exchange("OUT\r\n", "loud!")
	errs := h.Activities.WaitFor(t, v1alpha1.ActivityError, 5)
	for i, want := range []string{
		"rule 1: spec.conversation.rules[0].when: division by zero",
		"rule 2: spec.conversation.rules[1].updates[0].expr: division by zero",
		"spec.conversation.rules[1].response: division by zero",
		"spec.operation.transform.input: unhex: encoding/hex: invalid byte: U+007A 'z'",
		"spec.operation.transform.output: fromBE: takes 1 to 8 bytes, not 0",
	} {
		if errs[i].Message != want {
			t.Errorf("error %d: %q, want %q", i, errs[i].Message, want)
		}
		if errs[i].Connection == nil || errs[i].Connection.ID != "c-000001" {
			t.Errorf("error %d names no connection: %+v", i, errs[i].Connection)
		}
	}
}

// An expression that costs more than its budget at run time (a variable far longer than
// estimated) is cut, an Error activity, and the conversation goes on.
func TestExprCostIsCutAtRunTime(t *testing.T) {
	h := start(t, `
operation: {port: 1, maxInputSize: 65536, framing: {type: Delimiter, delimiter: "\r\n"}}
memory: {connection: [{name: big}]}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "^KEEP", captures: [{regex: "^KEEP (.*)", variable: big}], response: "kept\r\n"}
  - id: 2
    mode: Sync
    regex: "^SCAN"
    when: "big.split('').exists(c, c == 'z' || c == 'y' || c == 'x' || c == 'w' || c == 'v' || c == 'u' || c == 't' || c == 's')"
    response: "found\r\n"
  - {id: 3, mode: Sync, regex: "^PING", response: "pong\r\n"}
`)
	p := h.dial()
	// Delimiter framing: the 60 KB line is one input however the reads cut it.
	p.exchange("KEEP "+strings.Repeat("ab", 30000)+"\r\n", "kept\r\n")
	h.quiet(p, "SCAN\r\n", 2)
	p.exchange("PING\r\n", "pong\r\n")
	e := h.Activities.WaitFor(t, v1alpha1.ActivityError, 1)[0]
	if !strings.HasPrefix(e.Message, "rule 2: spec.conversation.rules[1].when: ") || !strings.Contains(e.Message, "cost limit exceeded") {
		t.Errorf("error %q", e.Message)
	}
}
