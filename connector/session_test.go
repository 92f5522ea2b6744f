package connector_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/parley-dev/parley/api/v1alpha1"
)

const sessionRules = `
operation:
  port: 1
  interactionTimeout: 30s
  session: {enabled: true, key: SID, endValue: ";"}
memory:
  connection: [{name: user, type: string, default: nobody}]
conversation:
  greetings: {value: "welcome;"}
  rules:
  - {id: 1, mode: Sync, regex: "LOGIN (\\w+)", captures: [{regex: "LOGIN (\\w+)", variable: user}], response: "hello {{user}} in {{SESSION_KEY}} {{SESSION_VALUE}};"}
  - {id: 2, mode: Sync, regex: "WHO", response: "{{user}};"}
`

func TestSessionsTellPeersFromOneIPApart(t *testing.T) {
	h := start(t, sessionRules)
	a, b := h.dial(), h.dial() // both from 127.0.0.1, keyed by IP without sessions
	a.exchange("SID=aaa; LOGIN alice", "welcome;hello alice in SID aaa;")
	b.exchange("SID=bbb; LOGIN bob", "welcome;hello bob in SID bbb;")
	a.exchange("SID=aaa; WHO", "alice;")
	b.exchange("SID=bbb; WHO", "bob;")
	a.conn.Close()
	c := h.dial() // a new socket with a's session: its memory, no new greeting
	c.exchange("SID=aaa WHO", "alice;")

	conns := map[string]string{}
	for _, in := range h.Activities.WaitFor(t, v1alpha1.ActivityInput, 5) {
		if prev, ok := conns[in.Connection.Session]; ok && prev != in.Connection.ID {
			t.Errorf("session %s in two conversations", in.Connection.Session)
		}
		conns[in.Connection.Session] = in.Connection.ID
	}
	if len(conns) != 2 || conns["aaa"] == conns["bbb"] {
		t.Errorf("conversations by session: %v", conns)
	}
}

func TestSessionSocketMovesToTheConversationOfItsID(t *testing.T) {
	h := start(t, sessionRules)
	a, b := h.dial(), h.dial()
	a.exchange("SID=aaa; LOGIN alice", "welcome;hello alice in SID aaa;")
	b.exchange("SID=bbb; LOGIN bob", "welcome;hello bob in SID bbb;")
	a.exchange("SID=bbb; WHO", "bob;") // a's socket now belongs to bbb
	a.exchange("WHO", "bob;")
	b.exchange("SID=bbb; WHO", "bob;")
}

func TestGeneratedSessionIDs(t *testing.T) {
	h := start(t, `
operation:
  port: 1
  interactionTimeout: 30s
  socket: {closeAfterReplying: true}
  session: {enabled: true, key: token, separator: ":", generate: {length: 10, charset: Numeric}}
memory: {connection: [{name: hits, type: int}]}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "GET", operation: {name: NBR_SUM, inputs: [hits, "1"], outputs: [hits]}, response: "{{SESSION_KEY}}:{{SESSION_VALUE}} hits={{hits}}\n"}
`)
	first := h.dial()
	first.send("GET /")
	got := first.expectClosed()
	m := regexp.MustCompile(`^token:(\d{10}) hits=0\n$`).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("first reply %q", got)
	}
	for i := 1; i <= 2; i++ {
		p := h.dial()
		p.send("GET / token:" + m[1])
		if got := p.expectClosed(); got != "token:"+m[1]+" hits="+string(rune('0'+i))+"\n" {
			t.Errorf("request %d: %q", i, got)
		}
	}
	other := h.dial()
	other.send("GET /")
	if got := other.expectClosed(); strings.Contains(got, m[1]) || !strings.HasSuffix(got, "hits=0\n") {
		t.Errorf("a peer without an id got %q", got)
	}
}

func TestSessionUpdate(t *testing.T) {
	h := start(t, `
operation:
  port: 1
  interactionTimeout: 30s
  session: {enabled: true, key: "Cookie: s", endValue: ";", updateWhen: Detected}
memory: {connection: [{name: tok, type: string}, {name: user, type: string}]}
conversation:
  rules:
  - id: 1
    mode: Sync
    regex: "LOGIN (\\w+)"
    captures: [{regex: "LOGIN (\\w+)", variable: user}, {regex: "LOGIN (\\w+)", variable: tok}]
    sessionUpdate: {fromVariable: tok}
    response: "Set-Cookie: s={{SESSION_VALUE}};"
  - {id: 2, mode: Sync, regex: "TAKEN", sessionUpdate: {value: carol}}
  - {id: 3, mode: Sync, regex: "ME", response: "{{user}}@{{SESSION_VALUE}};"}
`)
	a := h.dial()
	a.exchange("LOGIN carol", "Set-Cookie: s=carol;")
	b := h.dial()
	b.exchange("Cookie: s=carol; ME", "carol@carol;")
	c := h.dial()
	c.exchange("LOGIN dave", "Set-Cookie: s=dave;")
	h.quiet(c, "TAKEN", 4) // dave's conversation may not take carol's id
	e := h.Activities.WaitFor(t, v1alpha1.ActivityError, 1)[0]
	if !strings.Contains(e.Message, `sessionUpdate: session id "carol" belongs to another live conversation`) {
		t.Errorf("Error %q", e.Message)
	}
	c.exchange("ME", "dave@dave;")
}

func TestUDPSessions(t *testing.T) {
	h := start(t, `
operation: {port: 1, transport: UDP, interactionTimeout: 30s, memoryUpdateWhen: Detected, session: {enabled: true, key: "id=", separator: ""}}
memory: {connection: [{name: count, type: int}]}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "INC", operation: {name: NBR_SUM, inputs: [count, "1"], outputs: [count]}, response: "{{SESSION_VALUE}}={{count}}"}
`)
	a, b := h.dialUDP(), h.dialUDP() // one IP; without sessions they would share a conversation
	a.send("INC id=x")
	a.expect("x=1")
	b.send("INC id=y")
	b.expect("y=1")
	a.send("INC id=x")
	a.expect("x=2")
	c := h.dialUDP()
	c.send("INC id=y") // another port, y's session
	c.expect("y=2")
	if err := h.Stop(); err != nil { // flushes every activity
		t.Fatal(err)
	}
	if n := len(h.Activities.Of(v1alpha1.ActivityConnected)); n != 2 {
		t.Errorf("%d conversations, want 2", n)
	}
}

func TestSessionUpdateGenerateDoesNotGenerateForOthers(t *testing.T) {
	h := start(t, `
operation: {port: 1, interactionTimeout: 30s, memoryUpdateWhen: Detected, session: {enabled: true, key: "sid="}}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "NEW", sessionUpdate: {generate: true}, response: "{{SESSION_VALUE}};"}
  - {id: 2, mode: Sync, regex: "WHO", response: "[{{SESSION_VALUE}}];"}
`)
	p := h.dial()
	p.exchange("WHO", "[];") // no id, no generate: keyed by address
	p.send("NEW")
	id, err := p.r.ReadString(';')
	if err != nil || !regexp.MustCompile(`^[0-9a-z]{12};$`).MatchString(id) {
		t.Fatalf("generated id %q (%v)", id, err)
	}
	q := h.dial()
	q.exchange("WHO", "[];")
}

// A UDP peer that never echoes its generated id keeps one conversation (found by its
// address), instead of starting a new one with every datagram.
func TestUDPGeneratedSessionFollowsTheAddress(t *testing.T) {
	h := start(t, `
operation:
  port: 1
  transport: UDP
  identifyBy: Address
  interactionTimeout: 30s
  memoryUpdateWhen: Detected
  session: {enabled: true, key: "id=", separator: "", generate: {length: 8, charset: HexLower}}
memory: {connection: [{name: count, type: int}]}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "INC", operation: {name: NBR_SUM, inputs: [count, "1"], outputs: [count]}, response: "{{SESSION_VALUE}}={{count}}"}
`)
	u := h.dialUDP()
	u.send("INC please") // long enough for the amplification guard to let the reply out
	first := u.recv()
	id := strings.TrimSuffix(first, "=1")
	if len(id) != 8 || first != id+"=1" {
		t.Fatalf("first reply %q", first)
	}
	u.send("INC please") // no id: the same conversation, by address
	u.expect(id + "=2")
	u.send("INC id=" + id) // with it: the same again
	u.expect(id + "=3")
	other := h.dialUDP() // another port: a conversation of its own
	other.send("INC please")
	if got := other.recv(); strings.HasPrefix(got, id) || !strings.HasSuffix(got, "=1") {
		t.Errorf("another peer got %q", got)
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := len(h.Activities.Of(v1alpha1.ActivityConnected)); n != 2 {
		t.Errorf("%d conversations, want 2", n)
	}
}

// Five UDP clients on one IP, each given its own id by the server and echoing it, keep five
// conversations (as under Lope): a first datagram without an id does not join the
// conversation another client started from that IP, and each conversation's async replies
// go to its own client.
func TestUDPSessionsOfClientsOnOneIPStayApart(t *testing.T) {
	h := start(t, `
operation:
  port: 1
  transport: UDP
  interactionTimeout: 30s
  memoryUpdateWhen: Detected
  session: {enabled: true, key: "id=", separator: "", generate: {length: 8, charset: HexLower}}
memory: {connection: [{name: count, type: int}]}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "HELLO", response: "id={{SESSION_VALUE}}"}
  - id: 2
    mode: Sync
    regex: "INC"
    operation: {name: NBR_SUM, inputs: [count, "1"], outputs: [count]}
    response: "{{SESSION_VALUE}}={{count}}"
    trigger: [{ruleID: 3, delay: 50ms}]
  - {id: 3, mode: Async, response: "async {{SESSION_VALUE}}={{count}}"}
`)
	clients := make([]*udpPeer, 5)
	ids := make([]string, 5)
	seen := map[string]bool{}
	for i := range clients {
		clients[i] = h.dialUDP()
		clients[i].send("HELLO please") // no id yet: the server gives one
		got := clients[i].recv()
		ids[i] = strings.TrimPrefix(got, "id=")
		if len(ids[i]) != 8 || seen[ids[i]] {
			t.Fatalf("client %d got %q (ids so far %v)", i, got, ids[:i])
		}
		seen[ids[i]] = true
	}
	for round := 1; round <= 2; round++ {
		for i, c := range clients {
			c.send("INC id=" + ids[i])
			c.expect(fmt.Sprintf("%s=%d", ids[i], round))
		}
		for i, c := range clients {
			c.expect(fmt.Sprintf("async %s=%d", ids[i], round))
		}
	}
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := len(h.Activities.Of(v1alpha1.ActivityConnected)); n != 5 {
		t.Errorf("%d conversations, want 5", n)
	}
}

// In UDP session mode a datagram without an id belongs to the conversation its own address
// (IP and port) started, never to one another client on the same IP started.
func TestUDPDatagramWithoutSessionFollowsItsOwnAddressOnly(t *testing.T) {
	h := start(t, `
operation: {port: 1, transport: UDP, interactionTimeout: 30s, memoryUpdateWhen: Detected, session: {enabled: true, key: "id=", separator: ""}}
memory: {connection: [{name: count, type: int}]}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "INC", operation: {name: NBR_SUM, inputs: [count, "1"], outputs: [count]}, response: "[{{SESSION_VALUE}}]={{count}}"}
`)
	a, b := h.dialUDP(), h.dialUDP()
	a.send("INC id=a")
	a.expect("[a]=1")
	b.send("INC please") // no id, another port: a conversation of its own
	b.expect("[]=1")
	b.send("INC id=b") // its conversation adopts the id
	b.expect("[b]=2")
	a.send("INC please") // no id: the conversation a's address started
	a.expect("[a]=2")
	b.send("INC please")
	b.expect("[b]=3")
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if n := len(h.Activities.Of(v1alpha1.ActivityConnected)); n != 2 {
		t.Errorf("%d conversations, want 2", n)
	}
}
