package connector_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
)

// inputs returns the texts of the first n Input activities, waiting for them.
func (h *harness) inputs(n int) []string {
	h.t.Helper()
	var out []string
	for _, a := range h.Activities.WaitFor(h.t, v1alpha1.ActivityInput, n)[:n] {
		raw, err := base64.StdEncoding.DecodeString(a.Input.Base64)
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, string(raw))
	}
	return out
}

// short cuts long inputs for messages.
func short(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		if len(s) > 80 {
			s = fmt.Sprintf("%s...(%d bytes)", s[:80], len(s))
		}
		out[i] = s
	}
	return out
}

func (h *harness) wantInputs(want ...string) {
	h.t.Helper()
	got := h.inputs(len(want))
	if strings.Join(got, "|") != strings.Join(want, "|") {
		h.t.Fatalf("inputs %q, want %q", short(got), short(want))
	}
	if all := h.Activities.Of(v1alpha1.ActivityInput); len(all) != len(want) {
		h.t.Fatalf("%d inputs, want %d", len(all), len(want))
	}
}

// sendBytewise writes s one byte per write (the connector may still read several at once;
// what matters is that a message split over writes is still one input).
func (p *peer) sendBytewise(s string) {
	p.t.Helper()
	for i := range len(s) {
		p.send(s[i : i+1])
	}
}

const delimiterRules = `
operation: {port: 1, framing: {type: Delimiter, delimiter: "\r\n", maxFrameSize: 64}}
conversation:
  default: {value: "?\r\n"}
  rules:
  - {id: 1, mode: Sync, regex: "^PING", response: "+PONG\r\n"}
  - {id: 2, mode: Sync, regex: "^ECHO (\\w+)", captures: [{regex: "^ECHO (\\w+)", variable: w}], response: "{{w}}\r\n"}
memory: {connection: [{name: w, type: string}]}
`

func TestDelimiterFramingPipelinedAreSeparateInputsInOrder(t *testing.T) {
	h := start(t, delimiterRules)
	p := h.dial()
	p.send("PING\r\nECHO one\r\nPING\r\nECHO two\r\n")
	p.expect("+PONG\r\none\r\n+PONG\r\ntwo\r\n")
	h.wantInputs("PING\r\n", "ECHO one\r\n", "PING\r\n", "ECHO two\r\n")
}

func TestDelimiterFramingSplitMessageIsOneInput(t *testing.T) {
	h := start(t, delimiterRules)
	p := h.dial()
	p.sendBytewise("ECHO split\r\n")
	p.expect("split\r\n")
	p.sendBytewise("PI")
	p.send("NG\r\nECHO x")
	p.expect("+PONG\r\n")
	p.send("yz\r\n")
	p.expect("xyz\r\n")
	h.wantInputs("ECHO split\r\n", "PING\r\n", "ECHO xyz\r\n")
}

func TestDelimiterFramingRestAtCloseIsLastInput(t *testing.T) {
	h := start(t, delimiterRules)
	p := h.dial()
	p.send("PING\r\nECHO last")
	p.expect("+PONG\r\n")
	_ = p.conn.(interface{ CloseWrite() error }).CloseWrite()
	p.expect("last\r\n")
	h.Activities.WaitFor(t, v1alpha1.ActivityEnded, 1)
	h.wantInputs("PING\r\n", "ECHO last")
}

func TestFrameOverMaxFrameSizeIsAnErrorAndClosesTheSocket(t *testing.T) {
	h := start(t, delimiterRules)
	p := h.dial()
	p.send("PING\r\n")
	p.expect("+PONG\r\n")
	// 1 MiB without a delimiter: the connector holds at most 64 bytes of it.
	chunk := strings.Repeat("x", 4096)
	go func() {
		for range 256 {
			if _, err := p.conn.Write([]byte(chunk)); err != nil {
				return
			}
		}
	}()
	// Closed with bytes unread, the socket may reset rather than end cleanly.
	_ = p.conn.SetReadDeadline(time.Now().Add(wait))
	if n, err := p.r.Read(make([]byte, 16)); n > 0 || err == nil || isTimeout(err) {
		t.Errorf("read %d bytes, %v: want the socket closed", n, err)
	}
	e := h.Activities.WaitFor(t, v1alpha1.ActivityError, 1)[0]
	if !strings.HasPrefix(e.Message, "Delimiter framing: frame over maxFrameSize: a frame of at least 65 bytes, over 64") || e.Connection == nil {
		t.Errorf("Error %q on %+v", e.Message, e.Connection)
	}
	if b := h.Activities.WaitFor(t, v1alpha1.ActivityBroken, 1)[0]; !strings.Contains(b.Message, "over maxFrameSize") {
		t.Errorf("Broken %q", b.Message)
	}
	h.wantInputs("PING\r\n")
}

// TestPartialFramesDoNotResetTheIdleClock: a peer trickling a frame that never ends is
// timed out; only complete inputs count as interaction.
func TestPartialFramesDoNotResetTheIdleClock(t *testing.T) {
	h := start(t, `
operation: {port: 1, interactionTimeout: 300ms, framing: {type: Delimiter, delimiter: "\n", maxFrameSize: 1000}}
conversation: {timeout: {value: "idle\n"}}
`)
	p := h.dial()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// One byte every 100ms for up to 90s: were each one to count, the timeout (300ms)
		// would never come.
		for range 900 {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := p.conn.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	_ = p.conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	got := make([]byte, 5)
	if _, err := p.r.Read(got); err != nil || string(got) != "idle\n" {
		t.Fatalf("got %q, %v", got, err)
	}
	h.Activities.WaitFor(t, v1alpha1.ActivityTimedOut, 1)
}

func TestLengthFramingWithFillReplies(t *testing.T) {
	// DNS over TCP's shape: a 2-byte big-endian size that excludes itself.
	h := start(t, `
operation: {port: 1, encoding: binary, framing: {type: Length, length: {size: 2, adjust: 2, fillReplies: true}}}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "^\\x00.Q", response: "\x00\x00A{{q}}", captures: [{regex: "Q(\\w*)", variable: q}]}
  - {id: 2, mode: Sync, regex: "^\\x00.Q", response: "\x00\x00B"}
memory: {connection: [{name: q, type: string}]}
`)
	p := h.dial()
	p.send("\x00\x03Qab\x00\x01Q\x00\x04Qxyz")
	// Each rule's reply gets its own size, input after input.
	p.expect("\x00\x03Aab\x00\x01B" + "\x00\x01A\x00\x01B" + "\x00\x04Axyz\x00\x01B")
	p.sendBytewise("\x00\x05Qlong")
	p.expect("\x00\x05Along\x00\x01B")
	h.wantInputs("\x00\x03Qab", "\x00\x01Q", "\x00\x04Qxyz", "\x00\x05Qlong")
	if out := h.Activities.Of(v1alpha1.ActivityInput)[0].Output; out == nil || out.Bytes != 8 {
		t.Errorf("output recorded %+v", out)
	}
}

func TestMQTTLengthFraming(t *testing.T) {
	h := start(t, `
operation: {port: 1, encoding: binary, framing: {type: Length, length: {offset: 1, format: MQTT}, maxFrameSize: 100000}}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "^\\x10", response: "\x20\x02\x00\x00"}
  - {id: 2, mode: Sync, regex: "^\\x30", response: "P"}
`)
	publish := func(n int) string {
		body := "\x00\x01t" + strings.Repeat("m", n)
		v, rl := len(body), []byte(nil)
		for {
			b := byte(v & 0x7f)
			if v >>= 7; v > 0 {
				b |= 0x80
			}
			rl = append(rl, b)
			if v == 0 {
				break
			}
		}
		return "\x30" + string(rl) + body
	}
	connect := "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"
	p := h.dial()
	p.send(connect + publish(10) + publish(70000) + publish(200))
	p.expect("\x20\x02\x00\x00PPP")

	h.wantInputs(connect, publish(10), publish(70000), publish(200))
}

func TestRESPFramingPipelined(t *testing.T) {
	h := start(t, `
operation: {port: 1, framing: {type: RESP}}
conversation:
  default: {value: "-ERR\r\n"}
  rules:
  - {id: 1, mode: Sync, regex: "(?i)PING", response: "+PONG\r\n"}
  - {id: 2, mode: Sync, regex: "(?i)^\\*3\\r\\n\\$3\\r\\nSET", response: "+OK\r\n"}
`)
	p := h.dial()
	set := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$7\r\nx\r\ny\r\nz\r\n"
	p.send("*1\r\n$4\r\nPING\r\n" + set + "PING\r\n")
	p.expect("+PONG\r\n+OK\r\n+PONG\r\n")
	p.sendBytewise(set)
	p.expect("+OK\r\n")
	h.wantInputs("*1\r\n$4\r\nPING\r\n", set, "PING\r\n", set)
}

func TestHTTPFramingPipelined(t *testing.T) {
	h := start(t, `
operation: {port: 1, framing: {type: HTTP}}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "^GET (\\S+)", captures: [{regex: "^GET (\\S+)", variable: path}], response: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nG"}
  - {id: 2, mode: Sync, regex: "^POST", response: "HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nP"}
memory: {connection: [{name: path, type: string}]}
`)
	post := "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello\r\n\r\nyo"
	chunked := "POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"
	get := "GET /c HTTP/1.1\r\nHost: x\r\n\r\n"
	p := h.dial()
	p.send(post + chunked + get)
	p.expect("HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nP" + "HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nP" + "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nG")
	p.sendBytewise(chunked)
	p.expect("HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nP")
	h.wantInputs(post, chunked, get, chunked)
}

// TestRuleFramingSwitches: SMTP's DATA switches to the end-of-data delimiter and the body
// switches back; bytes already buffered are cut under the new framing.
func TestRuleFramingSwitches(t *testing.T) {
	h := start(t, `
operation: {port: 1, framing: {type: Delimiter, delimiter: "\r\n"}}
conversation:
  default: {value: "250 OK\r\n"}
  rules:
  - {id: 1, mode: Sync, regex: "^DATA", response: "354 go\r\n", framing: {type: Delimiter, delimiter: "\r\n.\r\n"}}
  - {id: 2, mode: Sync, regex: "\\r\\n\\.\\r\\n$", response: "250 queued\r\n", framing: {type: Delimiter, delimiter: "\r\n"}}
`)
	body := "Subject: hi\r\n\r\nline 1\r\nline 2\r\n.\r\n"
	p := h.dial()
	p.send("MAIL FROM:<a@b>\r\nDATA\r\n" + body + "QUIT\r\n")
	p.expect("250 OK\r\n354 go\r\n250 queued\r\n250 OK\r\n")
	p.send("DATA\r\n")
	p.expect("354 go\r\n")
	p.sendBytewise(body)
	p.expect("250 queued\r\n")
	h.wantInputs("MAIL FROM:<a@b>\r\n", "DATA\r\n", body, "QUIT\r\n", "DATA\r\n", body)
}

// TestRuleFramingFromRead: without operation.framing, a rule's framing starts framing a
// socket that was read as Lope reads it.
func TestRuleFramingFromRead(t *testing.T) {
	h := start(t, `
operation: {port: 1}
conversation:
  default: {value: "?\n"}
  rules:
  - {id: 1, mode: Sync, regex: "^LINES", response: "ok\n", framing: {type: Delimiter, delimiter: "\n"}}
`)
	p := h.dial()
	h.quiet(p, "a", 1) // default replies "?\n"
	p.expect("?\n")
	p.send("LINES\n")
	p.expect("ok\n")
	p.send("b\nc\n")
	p.expect("?\n?\n")
	h.wantInputs("a", "LINES\n", "b\n", "c\n")
}

func TestTLSWithFraming(t *testing.T) {
	ca := newCA(t, "parley-test")
	srv := ca.issue("server", false, false)
	cert := srv.pair(t)
	h := start(t, `
operation: {port: 1, tls: {enabled: true}, framing: {type: Delimiter, delimiter: "\n"}}
conversation:
  rules: [{id: 1, mode: Sync, regex: "PING", response: "+PONG\n"}]
`, func(o *connector.Options) {
		o.TLS = &connector.TLS{Certificate: &cert, HandshakeTimeout: wait} // openssl may be slow to start
	})
	c := runOpenSSL(t, "s_client", "-connect", h.Addr(), "-CAfile", ca.File, "-quiet")
	c.send("PING\nPING\nPI")
	h.Activities.WaitFor(t, v1alpha1.ActivityInput, 2)
	c.send("NG\n")
	c.waitOutput("+PONG\n+PONG\n+PONG\n")
	h.wantInputs("PING\n", "PING\n", "PING\n")
}

func TestClientModeWithFraming(t *testing.T) {
	tg := newTarget(t, func(line string) (string, bool) {
		if line == "HELLO" {
			return "ONE\nTWO\nTH", false // two lines and a half in one write
		}
		if line == "MORE" {
			return "REE\n", true
		}
		return "", false
	})
	h := start(t, fmt.Sprintf(`
operation: {mode: Client, ip: 127.0.0.1, port: %d, maxConcurrentConnections: 1, framing: {type: Delimiter, delimiter: "\n"}}
conversation:
  greetings: {value: "HELLO\n"}
  rules:
  - {id: 1, mode: Sync, regex: "^TWO", response: "MORE\n"}
`, tg.port()))
	if err := h.Wait(); err != nil {
		t.Fatal(err)
	}
	h.wantInputs("ONE\n", "TWO\n", "THREE\n")
}

// A rule that touches shared variables runs as a shared-memory step; its framing still
// switches the socket's framing, as any rule's does.
func TestRuleFramingSwitchesFromASharedStep(t *testing.T) {
	h := start(t, `
operation: {port: 1, framing: {type: Delimiter, delimiter: "\r\n"}}
memory: {shared: [{name: messages, type: int}]}
conversation:
  default: {value: "250 OK\r\n"}
  rules:
  - {id: 1, mode: Sync, regex: "^DATA", updates: [{variable: messages, expr: "messages + 1"}], response: "354 go\r\n", framing: {type: Delimiter, delimiter: "\r\n.\r\n"}}
  - {id: 2, mode: Sync, regex: "\\r\\n\\.\\r\\n$", response: "250 queued\r\n", framing: {type: Delimiter, delimiter: "\r\n"}}
`)
	body := "Subject: hi\r\n\r\nline 1\r\n.\r\n"
	p := h.dial()
	p.send("DATA\r\n" + body + "QUIT\r\n")
	p.expect("354 go\r\n250 queued\r\n250 OK\r\n")
	h.wantInputs("DATA\r\n", body, "QUIT\r\n")
}

// A zero-delay async rule runs right after the input that scheduled it (docs/rules.md §5),
// even when the next frame is already buffered: it came in the same read.
func TestZeroDelayAsyncRunsBeforeTheNextBufferedFrame(t *testing.T) {
	h := start(t, `
operation: {port: 1, framing: {type: Delimiter, delimiter: "\n"}}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "^A", response: "a;", trigger: [{ruleID: 3, delay: 0s}]}
  - {id: 2, mode: Sync, regex: "^B", response: "b;"}
  - {id: 3, mode: Async, response: "z;"}
`)
	for i := 0; i < 20; i++ { // the timer could win the race now and then; the order must not depend on it
		p := h.dial()
		p.send("A\nB\n")
		p.expect("a;z;b;")
		p.conn.Close()
	}
}
