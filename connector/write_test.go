package connector_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
)

// Rules whose replies may be of 8 MiB ({{blob}} 256 times): more than a loopback socket's
// buffers take while the peer reads nothing.
const writeBlobRules = `
operation: {port: 1}
memory: {connection: [{name: blob, type: string, default: "%BLOB%"}]}
conversation:
  greetings: {value: "%GREETING%"}
  rules:
  - {id: 1, mode: Sync, regex: "^BIG", response: "%BIG%"}
  - {id: 2, mode: Sync, regex: "^PING", response: "+PONG\r\n"}
`

const bigReply = "{{blob}}"

func writeBlobSpec(greeting string) string {
	return strings.NewReplacer("%BLOB%", strings.Repeat("x", 32<<10), "%GREETING%", greeting,
		"%BIG%", strings.Repeat(bigReply, 256)).Replace(writeBlobRules)
}

// A peer that reads nothing holds a write at most Options.WriteTimeout: the reply is cut
// and said so, though most replies are written without a deadline (the socket takes them
// at once).
func TestWriteToAPeerThatDoesNotReadTimesOut(t *testing.T) {
	h := start(t, writeBlobSpec(strings.Repeat(bigReply, 256)), func(o *connector.Options) {
		o.WriteTimeout = 300 * time.Millisecond
	})
	h.dial() // and never reads
	greeted := h.Activities.WaitFor(t, v1alpha1.ActivityGreeted, 1)
	if g := greeted[0]; !strings.Contains(g.Message, "i/o timeout") || g.Output == nil || g.Output.Bytes >= 8<<20 {
		t.Fatalf("Greeted: message %q, output %+v; want the write cut at its deadline", g.Message, g.Output)
	}
}

// A reply written in part under its deadline (the peer was slow to read) leaves no
// deadline behind: a later reply, once that deadline has passed, is written.
func TestAReplyAfterASlowWriteIsNotCutByItsDeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	h := start(t, writeBlobSpec(`+OK\r\n`), func(o *connector.Options) { o.WriteTimeout = timeout })
	p := h.dial()
	p.expect("+OK\r\n")
	// BIG's reply is 8 MiB: the socket takes part of it, the rest waits for the peer to
	// read, under the deadline.
	big := strings.Repeat(strings.Repeat("x", 32<<10), 256)
	p.send("BIG\r\n")
	_ = p.conn.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(p.r, make([]byte, len(big))); err != nil {
		t.Fatalf("reading BIG's reply: %v", err)
	}
	time.Sleep(2 * timeout) // the deadline of BIG's write has passed
	p.exchange("PING\r\n", "+PONG\r\n")
	inputs := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 2)
	for _, a := range inputs {
		if a.Message != "" {
			t.Errorf("input %q: %s", a.Input.Text, a.Message)
		}
	}
}
