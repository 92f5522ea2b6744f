package connector_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/internal/freeport"
)

// target is a real TCP server for client-mode tests: it records what each connection says
// and answers each line with handle's reply.
type target struct {
	ln    net.Listener
	mu    sync.Mutex
	conns int
	lines []string
}

func newTarget(t *testing.T, handle func(line string) (reply string, close bool)) *target {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tg := &target{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tg.mu.Lock()
			tg.conns++
			tg.mu.Unlock()
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					tg.mu.Lock()
					tg.lines = append(tg.lines, strings.TrimSpace(line))
					tg.mu.Unlock()
					reply, closeIt := handle(strings.TrimSpace(line))
					if reply != "" {
						fmt.Fprint(c, reply)
					}
					if closeIt {
						return
					}
				}
			}()
		}
	}()
	return tg
}

func (tg *target) port() int { return tg.ln.Addr().(*net.TCPAddr).Port }

func (tg *target) snapshot() (int, []string) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.conns, append([]string(nil), tg.lines...)
}

// settled waits until the target has read n lines (it reads after the client has gone).
func (tg *target) settled(t *testing.T, n int) (int, []string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		conns, lines := tg.snapshot()
		if len(lines) >= n || time.Now().After(deadline) {
			return conns, lines
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClientModeHoldsConversationsAndEndsWhenAllEnd(t *testing.T) {
	tg := newTarget(t, func(line string) (string, bool) {
		switch {
		case strings.HasPrefix(line, "HELLO"):
			return "WELCOME\n", false
		case line == "QUIT":
			return "", true
		}
		return "WHAT\n", false
	})
	h := start(t, fmt.Sprintf(`
operation: {mode: Client, ip: 127.0.0.1, port: %d, maxConcurrentConnections: 3}
conversation:
  greetings: {value: "HELLO from {{PORT}}\n"}
  ending: {value: "QUIT\n"}
  rules:
  - {id: 1, mode: Sync, regex: "WELCOME", response: "STATUS\n"}
  - {id: 2, mode: Sync, regex: "WHAT", ending: true}
`, tg.port()))
	if err := h.Wait(); err != nil {
		t.Fatalf("client run: %v", err)
	}
	conns, lines := tg.settled(t, 9)
	if conns != 3 {
		t.Errorf("%d connections opened", conns)
	}
	if got := strings.Count(strings.Join(lines, "|"), "QUIT"); got != 3 {
		t.Errorf("lines: %v", lines)
	}
	if n := len(h.Activities.Of(v1alpha1.ActivityEnded)); n != 3 {
		t.Errorf("%d Ended", n)
	}
	if st := h.Activities.Of(v1alpha1.ActivityConnectorStopped); len(st) != 1 || st[0].Message != "all conversations ended" {
		t.Errorf("stopped: %+v", st)
	}
}

func TestClientReconnectBeforeAndRedialForAsync(t *testing.T) {
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
  - {id: 1, mode: Sync, regex: "NEXT", reconnectBefore: true, response: "TWO\n", closeConnection: true, trigger: [{ruleID: 2, delay: 100ms}]}
  - {id: 2, mode: Async, response: "THREE\n", ending: true}
`, tg.port()))
	if err := h.Wait(); err != nil {
		t.Fatal(err)
	}
	conns, lines := tg.settled(t, 3)
	if conns != 3 || strings.Join(lines, ",") != "ONE,TWO,THREE" {
		t.Errorf("%d connections, lines %v", conns, lines)
	}
}

func TestClientModeFailsWhenNothingConnects(t *testing.T) {
	port := freeport.T(t) // nothing listens there (an ephemeral port might: listeners on :0 get those)
	h := start(t, fmt.Sprintf(`operation: {mode: Client, ip: 127.0.0.1, port: %d, maxConcurrentConnections: 2}`, port),
		func(o *connector.Options) { o.DialTimeout = 2 * time.Second })
	err := h.Wait()
	if err == nil || !strings.Contains(err.Error(), "no conversation could connect") {
		t.Errorf("Run: %v", err)
	}
	if e := h.Activities.Of(v1alpha1.ActivityError); len(e) != 2 || !strings.Contains(e[0].Message, "refused") {
		t.Errorf("errors: %+v", e)
	}
}

func TestClientModeUDP(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	got := make(chan string, 8)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
			if string(buf[:n]) == "hello" {
				_, _ = pc.WriteToUDP([]byte("ACK"), from)
			}
		}
	}()
	h := start(t, fmt.Sprintf(`
operation: {mode: Client, transport: UDP, ip: 127.0.0.1, port: %d, maxConcurrentConnections: 1}
conversation:
  greetings: {value: "hello"}
  ending: {value: "bye"}
  rules: [{id: 1, mode: Sync, regex: "ACK", response: "thanks", ending: true}]
`, pc.LocalAddr().(*net.UDPAddr).Port))
	if err := h.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hello", "thanks", "bye"} {
		select {
		case g := <-got:
			if g != want {
				t.Errorf("datagram %q, want %q", g, want)
			}
		case <-time.After(wait):
			t.Fatalf("no %q", want)
		}
	}
}

// reconnectBefore reopens TCP and DTLS sockets only (as Lope does): a plain UDP client
// keeps its socket, so every datagram of the conversation leaves from one address.
func TestClientReconnectBeforeDoesNothingOnUDP(t *testing.T) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	type datagram struct{ text, from string }
	got := make(chan datagram, 8)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			got <- datagram{string(buf[:n]), from.String()}
			if string(buf[:n]) == "hello" {
				_, _ = pc.WriteToUDP([]byte("NEXT"), from)
			}
		}
	}()
	h := start(t, fmt.Sprintf(`
operation: {mode: Client, transport: UDP, ip: 127.0.0.1, port: %d, maxConcurrentConnections: 1}
conversation:
  greetings: {value: "hello"}
  ending: {value: "bye"}
  rules:
  - {id: 1, mode: Sync, regex: "NEXT", reconnectBefore: true, response: "two", trigger: [{ruleID: 2, delay: 100ms}]}
  - {id: 2, mode: Async, reconnectBefore: true, response: "three", ending: true}
`, pc.LocalAddr().(*net.UDPAddr).Port))
	if err := h.Wait(); err != nil {
		t.Fatal(err)
	}
	from := ""
	for _, want := range []string{"hello", "two", "three", "bye"} {
		select {
		case g := <-got:
			if g.text != want {
				t.Errorf("datagram %q, want %q", g.text, want)
			}
			if from == "" {
				from = g.from
			} else if g.from != from {
				t.Errorf("%q came from %s, the conversation began on %s", g.text, g.from, from)
			}
		case <-time.After(wait):
			t.Fatalf("no %q", want)
		}
	}
	for _, a := range h.Activities.All() {
		if strings.Contains(a.Message, "reconnect") {
			t.Errorf("%s activity: %q", a.Type, a.Message)
		}
	}
}
