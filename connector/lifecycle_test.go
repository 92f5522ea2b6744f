package connector_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/internal/freeport"
)

func TestInteractionTimeoutSendsTimeoutThenEndingThenCloses(t *testing.T) {
	h := start(t, `
operation: {port: 1, interactionTimeout: 3s}
conversation:
  rules: [{id: 1, mode: Sync, regex: "PING", response: "PONG;"}]
  timeout: {value: "timeout;"}
  ending: {value: "bye;"}
`)
	p := h.dial()
	// Well inside the timeout (2s to spare), so that a loaded machine's delays do not let it
	// fire first.
	time.Sleep(time.Second)
	p.exchange("PING", "PONG;") // input resets the idle clock
	last := time.Now()
	if rest := p.expectClosed(); rest != "timeout;bye;" {
		t.Errorf("got %q before close", rest)
	}
	// Measured from the reply, a little after the server read the input; without the reset
	// it would come about 2s after it.
	if d := time.Since(last); d < 2900*time.Millisecond || d > 8*time.Second {
		t.Errorf("timed out %v after the last input", d)
	}
	a := h.Activities.WaitFor(t, v1alpha1.ActivityTimedOut, 1)[0]
	if a.Rules.Basic != "timeout" || a.Output.Bytes != int32(len("timeout;bye;")) {
		t.Errorf("TimedOut activity: %+v %+v", a.Rules, a.Output)
	}
	if h.Connector.Active() != 0 {
		t.Errorf("%d live conversations after timeout", h.Connector.Active())
	}
}

func TestEndingRule(t *testing.T) {
	h := start(t, `
operation: {port: 1}
conversation:
  ending: {value: "221 bye\r\n"}
  rules: [{id: 1, mode: Sync, regex: "QUIT", response: "goodbye;", ending: true}]
`)
	p := h.dial()
	p.send("QUIT")
	if got := p.expectClosed(); got != "goodbye;221 bye\r\n" {
		t.Errorf("got %q", got)
	}
	ended := h.Activities.WaitFor(t, v1alpha1.ActivityEnded, 1)[0]
	if ended.Rules.Basic != "ending" || !strings.Contains(ended.Message, "ending rule 1") {
		t.Errorf("Ended: %+v %q", ended.Rules, ended.Message)
	}
	// the Input activity comes before the Ended one
	all := h.Activities.All()
	if all[len(all)-2].Type != v1alpha1.ActivityInput || all[len(all)-1].Type != v1alpha1.ActivityEnded {
		t.Errorf("order: %s %s", all[len(all)-2].Type, all[len(all)-1].Type)
	}
}

func TestPeerCloseEndsAndResetBreaks(t *testing.T) {
	h := start(t, `operation: {port: 1, identifyBy: Address}`)
	p := h.dial()
	h.Activities.WaitFor(t, v1alpha1.ActivityConnected, 1)
	p.conn.Close()
	if a := h.Activities.WaitFor(t, v1alpha1.ActivityEnded, 1)[0]; a.Message != "peer closed the connection" {
		t.Errorf("Ended message %q", a.Message)
	}
	q := h.dial()
	h.Activities.WaitFor(t, v1alpha1.ActivityConnected, 2)
	_ = q.conn.(*net.TCPConn).SetLinger(0) // close with RST
	q.conn.Close()
	// The call and its cause: the connection's peer is the activity's, not the message's.
	if a := h.Activities.WaitFor(t, v1alpha1.ActivityBroken, 1)[0]; a.Message != "read: connection reset by peer" {
		t.Errorf("Broken message %q", a.Message)
	}
}

func TestCloseConnectionKeepsTheLogicalConnection(t *testing.T) {
	h := start(t, `
operation: {port: 1, interactionTimeout: 5s, identifyBy: IP}
memory:
  connection: [{name: name, type: string, default: "nobody"}]
conversation:
  greetings: {value: "hello;"}
  rules:
  - {id: 1, mode: Sync, regex: "NAME (\\w+)", captures: [{regex: "NAME (\\w+)", variable: name}], response: "ok;", closeConnection: true}
  - {id: 2, mode: Sync, regex: "WHO", response: "{{name}};"}
`)
	p := h.dial()
	p.expect("hello;")
	p.send("NAME alice")
	if got := p.expectClosed(); got != "ok;" {
		t.Fatalf("got %q", got)
	}
	q := h.dial() // same IP: joins the live conversation, no second greeting
	q.exchange("WHO", "alice;")
	conns := h.Activities.WaitFor(t, v1alpha1.ActivityConnected, 2)
	if conns[0].Connection.ID != conns[1].Connection.ID || conns[1].Message == "" {
		t.Errorf("second socket: %+v %q", conns[1].Connection, conns[1].Message)
	}
	if n := len(h.Activities.Of(v1alpha1.ActivityGreeted)); n != 1 {
		t.Errorf("%d greetings", n)
	}
}

func TestCloseAfterReplyingWaitsForTriggeredRules(t *testing.T) {
	h := start(t, `
operation: {port: 1, interactionTimeout: 5s, socket: {closeAfterReplying: true}, identifyBy: IP}
memory:
  connection: [{name: hits, type: int}]
conversation:
  rules:
  - id: 1
    mode: Sync
    regex: "GET"
    operation: {name: NBR_SUM, inputs: [hits, "1"], outputs: [hits]}
    response: "200 OK;"
    trigger: [{ruleID: 2, delay: 200ms}]
  - {id: 2, mode: Async, response: "hits={{hits}};"}
`)
	for i := 1; i <= 3; i++ {
		p := h.dial()
		p.send("GET")
		if got := p.expectClosed(); got != fmt.Sprintf("200 OK;hits=%d;", i) {
			t.Fatalf("request %d: got %q", i, got)
		}
	}
	if n := len(h.Activities.Of(v1alpha1.ActivityEnded)); n != 0 {
		t.Errorf("the logical connection ended %d times", n)
	}
}

func TestMaxConcurrentConnectionsRefusesAndRecords(t *testing.T) {
	h := start(t, `
operation: {port: 1, identifyBy: Address, maxConcurrentConnections: 2}
conversation:
  greetings: {value: "hi;"}
`)
	a, b := h.dial(), h.dial()
	a.expect("hi;")
	b.expect("hi;")
	c := h.dial()
	if got := c.expectClosed(); got != "" {
		t.Errorf("refused peer got %q", got)
	}
	r := h.Activities.WaitFor(t, v1alpha1.ActivityRejected, 1)[0]
	if !strings.Contains(r.Message, "maxConcurrentConnections") || r.Connection == nil || r.Connection.Peer == "" {
		t.Errorf("Rejected: %+v", r)
	}
	if st := h.Connector.Stats(); st.Rejected != 1 || st.Active != 2 || st.Total != 2 {
		t.Errorf("stats %+v", st)
	}
	a.conn.Close()
	h.Activities.WaitFor(t, v1alpha1.ActivityEnded, 1)
	h.dial().expect("hi;") // a slot is free again
}

func TestIdentifyByIPJoinsSocketsFromOneAddress(t *testing.T) {
	h := start(t, `
operation: {port: 1, maxConcurrentConnections: 1, identifyBy: IP}
memory:
  connection: [{name: count, type: int}]
conversation:
  greetings: {value: "hi;"}
  rules: [{id: 1, mode: Sync, regex: "INC", operation: {name: NBR_SUM, inputs: [count, "1"], outputs: [count]}, response: "{{count}};"}]
`)
	a := h.dial()
	a.expect("hi;")
	b := h.dial() // same IP, over a cap of 1: it joins rather than being refused
	a.exchange("INC", "0;")
	b.exchange("INC", "1;")
	if n := len(h.Activities.Of(v1alpha1.ActivityRejected)); n != 0 {
		t.Errorf("%d rejected", n)
	}
}

// By default (identifyBy: Address) each socket is a conversation of its own, as every
// server behaves: two clients on one machine are each greeted, keep their own memory, and
// one's QUIT leaves the other's socket open.
func TestIdentifyByAddressIsTheDefault(t *testing.T) {
	h := start(t, `
operation: {port: 1}
memory:
  connection: [{name: count, type: int}]
conversation:
  greetings: {value: "hi;"}
  rules:
  - {id: 1, mode: Sync, regex: "INC", operation: {name: NBR_SUM, inputs: [count, "1"], outputs: [count]}, response: "{{count}};"}
  - {id: 2, mode: Sync, regex: "QUIT", response: "bye;", ending: true}
`)
	a := h.dial()
	a.expect("hi;")
	b := h.dial()
	b.expect("hi;")
	a.exchange("INC", "0;") // the reply goes out before the update (memoryUpdateWhen: Executed)
	b.exchange("INC", "0;")
	a.exchange("QUIT", "bye;")
	a.expectClosed()
	b.exchange("INC", "1;")
	h.Activities.WaitFor(t, v1alpha1.ActivityInput, 4)
	ids := map[string]bool{}
	for _, in := range h.Activities.Of(v1alpha1.ActivityInput) {
		ids[in.Connection.ID] = true
	}
	if len(ids) != 2 {
		t.Errorf("conversations %v, want two", ids)
	}
}

func TestExecutionDelay(t *testing.T) {
	prog := connectortest.Compile(t, `
operation: {port: 1, executionDelay: 400ms}
conversation: {greetings: {value: "late;"}}
`)
	// Pick a free port first: with a delay, the address is only known once serving.
	port := freeport.T(t)
	begin := time.Now()
	h := startProgram(t, prog, func(o *connector.Options) { o.Port = &port })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// A connection is a fault only if it came before the delay was over: a loaded machine may
	// stall this goroutine past it.
	if c, err := net.Dial("tcp4", addr); err == nil {
		c.Close()
		if d := time.Since(begin); d < 400*time.Millisecond {
			t.Fatalf("connected %v after the start, before executionDelay", d)
		}
	}
	<-h.Connector.Ready()
	if d := time.Since(begin); d < 400*time.Millisecond {
		t.Errorf("served after %v", d)
	}
	dialPeer(t, "tcp4", addr).expect("late;")
}

// listenBacklog is the backlog ss reports for the listening socket on port: ss shows it
// in the Send-Q column of listening sockets.
func listenBacklog(t *testing.T, port int) string {
	t.Helper()
	out, err := exec.Command("ss", "-ltnH", fmt.Sprintf("sport = :%d", port)).Output()
	if err != nil {
		t.Fatalf("ss (Debian package iproute2): %v", err)
	}
	fields := strings.Fields(string(out))
	if len(fields) < 3 {
		t.Fatalf("ss: %q", out)
	}
	return fields[2]
}

func TestConnectionQueueDefaultsToTheSystemsMaximum(t *testing.T) {
	somaxconn, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		t.Skipf("no somaxconn to compare with: %v", err)
	}
	h := start(t, `operation: {port: 1}`)
	port := h.Connector.Addr().(*net.TCPAddr).Port
	if got, want := listenBacklog(t, port), strings.TrimSpace(string(somaxconn)); got != want {
		t.Errorf("backlog %s, want the system's maximum %s", got, want)
	}
}

func TestConnectionQueueSetsTheBacklog(t *testing.T) {
	h := start(t, `operation: {port: 1, connectionQueue: 37}`)
	if got := listenBacklog(t, h.Connector.Addr().(*net.TCPAddr).Port); got != "37" {
		t.Errorf("backlog %s, want 37", got)
	}
}

func TestStopEndsConversationsGracefully(t *testing.T) {
	h := start(t, `
operation: {port: 1, identifyBy: Address}
conversation:
  greetings: {value: "hi;"}
  ending: {value: "bye;"}
`)
	a, b := h.dial(), h.dial()
	a.expect("hi;")
	b.expect("hi;")
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*peer{a, b} {
		if got := p.expectClosed(); got != "bye;" {
			t.Errorf("got %q", got)
		}
	}
	all := h.Activities.All()
	if all[0].Type != v1alpha1.ActivityConnectorStarted || all[len(all)-1].Type != v1alpha1.ActivityConnectorStopped {
		t.Errorf("first %s, last %s", all[0].Type, all[len(all)-1].Type)
	}
	if n := len(h.Activities.Of(v1alpha1.ActivityEnded)); n != 2 {
		t.Errorf("%d Ended", n)
	}
}

func TestPauseRefusesNewConnectionsAndResumeAccepts(t *testing.T) {
	h := start(t, `
operation: {port: 1, identifyBy: Address}
conversation: {greetings: {value: "hi;"}, rules: [{id: 1, mode: Sync, regex: "PING", response: "PONG;"}]}
`)
	live := h.dial()
	live.expect("hi;")
	h.Connector.Pause()
	if got := h.dial().expectClosed(); got != "" {
		t.Errorf("paused connector greeted %q", got)
	}
	if r := h.Activities.WaitFor(t, v1alpha1.ActivityRejected, 1)[0]; r.Message != "connector paused" {
		t.Errorf("Rejected %q", r.Message)
	}
	live.exchange("PING", "PONG;") // live conversations go on
	h.Connector.Resume()
	h.dial().expect("hi;")
}

func TestUpdateAppliesToNewConversationsOnly(t *testing.T) {
	// Detected: the count is updated before the reply, so the client cannot outrun it.
	h := start(t, `
operation: {port: 1, identifyBy: Address, memoryUpdateWhen: Detected}
memory: {global: [{name: hits, type: int}]}
conversation: {rules: [{id: 1, mode: Sync, regex: "PING", response: "v1;", operation: {name: NBR_SUM, inputs: [hits, "1"], outputs: [hits]}}]}
`)
	old := h.dial()
	old.exchange("PING", "v1;")
	h.Connector.Update(connectortest.Compile(t, `
operation: {port: 1, identifyBy: Address}
memory: {global: [{name: hits, type: int}]}
conversation: {rules: [{id: 1, mode: Sync, regex: "PING", response: "v2 {{hits}};"}]}
`))
	old.exchange("PING", "v1;")
	h.dial().exchange("PING", "v2 2;") // global memory carried over
}

func TestInputsAreBoundedByMaxInputSize(t *testing.T) {
	h := start(t, `
operation: {port: 1, maxInputSize: 8}
conversation: {default: {value: "."}}
`)
	p := h.dial()
	p.send(strings.Repeat("A", 20))
	in := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 3)
	total := 0
	for _, a := range in {
		if a.Input.Bytes > 8 {
			t.Errorf("input of %d bytes", a.Input.Bytes)
		}
		total += int(a.Input.Bytes)
	}
	if !in[0].Input.Truncated {
		t.Error("a full read is not flagged truncated")
	}
	if total < 20 {
		h.Activities.WaitFor(t, v1alpha1.ActivityInput, 4)
	}
}

func TestRunFailsClearlyWhenThePortIsTaken(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	prog := connectortest.Compile(t, `operation: {port: 1}`)
	acts := &connectortest.Collector{}
	c, _ := connector.New(prog, connector.Options{Register: newRegister(acts), Port: &port, IP: ptr("127.0.0.1")})
	err = c.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), fmt.Sprint(port)) {
		t.Errorf("Run: %v", err)
	}
}

func TestSocketsPerLogicalConnectionAreBounded(t *testing.T) {
	h := start(t, `
operation: {port: 1, maxConcurrentConnections: 1, identifyBy: IP}
conversation: {greetings: {value: "hi;"}}
`)
	first := h.dial()
	first.expect("hi;")
	for i := 1; i < 64; i++ {
		h.dial() // same IP: joins the one conversation
	}
	h.Activities.WaitFor(t, v1alpha1.ActivityConnected, 64)
	if got := h.dial().expectClosed(); got != "" {
		t.Errorf("socket 65 got %q", got)
	}
	r := h.Activities.WaitFor(t, v1alpha1.ActivityRejected, 1)[0]
	if !strings.Contains(r.Message, "over 64 sockets") {
		t.Errorf("Rejected %q", r.Message)
	}
}

func TestRuleTriggeredClosingOffIgnoresCloseConnection(t *testing.T) {
	h := start(t, `
operation: {port: 1, socket: {ruleTriggeredClosing: false}}
conversation: {rules: [{id: 1, mode: Sync, regex: "BYE", response: "bye;", closeConnection: true}, {id: 2, mode: Sync, regex: "PING", response: "PONG;"}]}
`)
	p := h.dial()
	p.exchange("BYE", "bye;")
	p.exchange("PING", "PONG;") // still open
}

func TestAlertAllFlagsEveryActivity(t *testing.T) {
	h := start(t, `
operation: {port: 1, identifyBy: Address, maxConcurrentConnections: 1, alertAll: true}
conversation: {greetings: {value: "hi;"}}
`)
	h.dial().expect("hi;")
	h.dial().expectClosed() // refused: over the cap
	h.Activities.WaitFor(t, v1alpha1.ActivityRejected, 1)
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, a := range h.Activities.All() {
		if !a.Alert {
			t.Errorf("%s activity not flagged", a.Type)
		}
	}
}

// Two sockets from one IP share a conversation; the one that sent an input is the one
// answered, closed (closeAfterReplying) and named in {{PORT}} and the Input activity, however
// many sockets joined after it.
func TestTheInputsOwnSocketIsAnsweredClosedAndReported(t *testing.T) {
	h := start(t, `
operation: {port: 1, interactionTimeout: 30s, socket: {closeAfterReplying: true}, identifyBy: IP}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "^GET", response: "OK\r\n"}
  - {id: 2, mode: Sync, regex: "^PORT", response: "port={{PORT}}\n"}
`)
	a := h.dial()
	h.Activities.WaitFor(t, v1alpha1.ActivityConnected, 1)
	b := h.dial() // same IP: joins a's conversation, and is its most recent socket
	h.Activities.WaitFor(t, v1alpha1.ActivityConnected, 2)
	portOf := func(p *peer) string { return fmt.Sprint(p.conn.LocalAddr().(*net.TCPAddr).Port) }

	a.send("PORT\r\n")
	if got := a.expectClosed(); got != "port="+portOf(a)+"\n" {
		t.Errorf("a got %q before its close, want its own port %s", got, portOf(a))
	}
	b.expectSilence(200 * time.Millisecond) // still open, and told nothing
	b.send("GET\r\n")
	if got := b.expectClosed(); got != "OK\r\n" {
		t.Errorf("b got %q", got)
	}
	in := h.Activities.WaitFor(t, v1alpha1.ActivityInput, 2)
	for i, p := range []*peer{a, b} {
		if want := p.conn.LocalAddr().String(); in[i].Connection.Peer != want {
			t.Errorf("input %d: peer %s, want %s", i+1, in[i].Connection.Peer, want)
		}
	}
	if in[0].Connection.ID != in[1].Connection.ID {
		t.Errorf("two conversations: %s, %s", in[0].Connection.ID, in[1].Connection.ID)
	}
}

// An ending rule's reply and the ending go to the socket that sent the input; every other
// socket of the conversation is closed with it.
func TestAnEndingRuleAnswersTheInputsOwnSocket(t *testing.T) {
	h := start(t, `
operation: {port: 1, identifyBy: IP}
conversation:
  ending: {value: "bye;"}
  rules: [{id: 1, mode: Sync, regex: "^QUIT", response: "ok;", ending: true}]
`)
	a := h.dial()
	h.Activities.WaitFor(t, v1alpha1.ActivityConnected, 1)
	b := h.dial()
	h.Activities.WaitFor(t, v1alpha1.ActivityConnected, 2)
	a.send("QUIT")
	if got := a.expectClosed(); got != "ok;bye;" {
		t.Errorf("a got %q", got)
	}
	if got := b.expectClosed(); got != "" {
		t.Errorf("b got %q", got)
	}
	ended := h.Activities.WaitFor(t, v1alpha1.ActivityEnded, 1)[0]
	if want := a.conn.LocalAddr().String(); ended.Connection.Peer != want || ended.Output.Bytes != int32(len("bye;")) {
		t.Errorf("Ended: peer %s (want %s), %+v", ended.Connection.Peer, want, ended.Output)
	}
}

// With closeAfterReplying, the sockets answered while triggered rules were pending close once
// those have run, and the sockets that were not answered stay open.
func TestCloseAfterReplyingClosesEveryAnsweredSocketOnly(t *testing.T) {
	h := start(t, `
operation: {port: 1, interactionTimeout: 30s, socket: {closeAfterReplying: true}, identifyBy: IP}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "^GET", response: "OK;", trigger: [{ruleID: 3, delay: 300ms}]}
  - {id: 2, mode: Sync, regex: "^HEAD", response: "HEAD;"}
  - {id: 3, mode: Async, response: "later;"}
`)
	a := h.dial()
	h.Activities.WaitFor(t, v1alpha1.ActivityConnected, 1)
	b := h.dial()
	h.Activities.WaitFor(t, v1alpha1.ActivityConnected, 2)
	c := h.dial() // the most recent socket: async replies go to it
	h.Activities.WaitFor(t, v1alpha1.ActivityConnected, 3)
	a.exchange("GET", "OK;")
	b.exchange("HEAD", "HEAD;") // answered, but rule 3 is pending: b waits with a
	if got := a.expectClosed(); got != "" {
		t.Errorf("a got %q before its close", got)
	}
	if got := b.expectClosed(); got != "" {
		t.Errorf("b got %q before its close", got)
	}
	// c got the async reply; being answered, it closes too.
	if got := c.expectClosed(); got != "later;" {
		t.Errorf("c got %q", got)
	}
}

// A conversation lingering without a socket has nowhere to send timeout and ending: its
// TimedOut activity names no basic rule and says why nothing went out.
func TestALingeringConversationTimesOutWithoutSending(t *testing.T) {
	h := start(t, `
operation: {port: 1, interactionTimeout: 300ms, socket: {closeAfterReplying: true}}
conversation:
  rules: [{id: 1, mode: Sync, regex: "^GET", response: "OK;"}]
  timeout: {value: "timeout;"}
  ending: {value: "bye;"}
`)
	p := h.dial()
	p.send("GET")
	if got := p.expectClosed(); got != "OK;" {
		t.Fatalf("got %q", got)
	}
	a := h.Activities.WaitFor(t, v1alpha1.ActivityTimedOut, 1)[0]
	if a.Rules != nil || a.Output != nil {
		t.Errorf("TimedOut claims a reply: rules %+v, output %+v", a.Rules, a.Output)
	}
	if !strings.Contains(a.Message, "idle for 300ms") || !strings.Contains(a.Message, "no open socket: timeout and ending not sent") {
		t.Errorf("TimedOut message %q", a.Message)
	}
}

// A conversation without CEL expressions reads its plain TCP socket through the readiness
// path (readiness_linux.go), one with them through net.Conn.Read: the same peer, sending
// in several segments, half-closing, and resetting with data unread, gets the same replies
// and leaves the same activities either way.
func TestPlainTCPReadPathsRecordTheSame(t *testing.T) {
	play := func(when string) string {
		h := start(t, `
operation: {port: 1}
conversation: {rules: [{id: 1, mode: Sync, regex: ".", response: "ok;"`+when+`}]}
`)
		p := h.dial()
		for i, s := range []string{"PI", "NG", "QUIT"} {
			h.quiet(p, s, i+1) // one read each
		}
		p.send("last")
		_ = p.conn.(*net.TCPConn).CloseWrite()
		if got := p.expectClosed(); got != "ok;ok;ok;ok;" {
			t.Errorf("after a half-close, the peer read %q", got)
		}
		h.Activities.WaitFor(t, v1alpha1.ActivityEnded, 1)
		q := h.dial()
		h.quiet(q, "data", 5)
		_ = q.conn.(*net.TCPConn).SetLinger(0) // close with RST
		_ = q.conn.Close()
		h.Activities.WaitFor(t, v1alpha1.ActivityBroken, 1)
		var b strings.Builder
		for _, a := range h.Activities.All() {
			if a.Connection == nil {
				continue // the connector's own
			}
			fmt.Fprintf(&b, "%s", a.Type)
			if a.Input != nil {
				fmt.Fprintf(&b, " %q", a.Input.Text)
			}
			msg := strings.NewReplacer(h.Addr(), "SERVER", a.Connection.Peer, "PEER").Replace(a.Message)
			fmt.Fprintf(&b, " %s\n", msg)
		}
		return b.String()
	}
	plain, withExpr := play(""), play(`, when: "true"`)
	if plain != withExpr {
		t.Errorf("without expressions:\n%s\nwith them:\n%s", plain, withExpr)
	}
	if !strings.Contains(plain, "Broken ") || !strings.Contains(plain, "connection reset by peer") {
		t.Errorf("activities:\n%s", plain)
	}
}
