package lope

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/rules"
)

// These tests serve converted Lope files with the real connector and talk to them over
// real loopback sockets: the conversion is right when the conversation is.

const wait = 10 * time.Second

// captures returns every capture recorded, as variable=value.
func captures(acts *connectortest.Collector) []string {
	var out []string
	for _, a := range acts.All() {
		for _, c := range a.Captures {
			out = append(out, c.Variable+"="+c.Value)
		}
	}
	return out
}

// serve converts a testdata file, compiles it and runs it (in server mode on loopback)
// until the test ends, once it serves; override, if set, changes the options (client mode
// points them at a test server).
func serve(t *testing.T, file string, override func(*connector.Options)) *connectortest.Server {
	t.Helper()
	res, err := Convert(file)
	if err != nil {
		t.Fatal(err)
	}
	prog, errs := rules.Compile(res.Rules.Name, 1, &res.Rules.Spec)
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	tweaks := []func(*connector.Options){func(o *connector.Options) { o.Name = res.Rules.Name }}
	if override != nil {
		tweaks = append(tweaks, override)
	}
	srv := connectortest.Start(t, prog, tweaks...)
	srv.WaitReady() // in every mode, and after an execution_delay
	return srv
}

// TestServeTCPServer drives the converted IoT broker decoy line by line: the greeting with a
// generated id, Python's $ before a newline, a lookbehind capture, a delayed trigger, a bool
// update checked by a later condition, a STR_REPLACE with \1, a disabled rule, the empty and
// default rules, and a base64 ending rule followed by the base64 ending.
func TestServeTCPServer(t *testing.T) {
	srv := serve(t, "testdata/tcp_server.yml", nil)
	conn, err := net.DialTimeout("tcp", srv.Addr(), wait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(wait))
	r := bufio.NewReader(conn)
	expect := func(want string) {
		t.Helper()
		got, err := r.ReadString('\n')
		if err != nil || got != want {
			t.Fatalf("got %q (%v), want %q", got, err, want)
		}
	}
	say := func(line string, replies ...string) {
		t.Helper()
		if _, err := conn.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		for _, want := range replies {
			expect(want)
		}
	}

	greeting, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(greeting, "READY ") || len(strings.TrimSpace(greeting)) != len("READY ")+8 ||
		strings.Trim(greeting[6:len(greeting)-1], "0123456789ABCDEF") != "" {
		t.Fatalf("greeting %q (%v): want READY and 8 upper-case hex digits", greeting, err)
	}
	say("PING\n", "PONG\n")
	say("WHOAMI\n", "ERR unknown command\n") // not logged in yet: the condition holds back rule 4
	say("USER admin\n", "OK user admin\n", "WELCOME admin\n")
	say("PASS hunter2\n", "OK logged in\n")
	say("WHOAMI\n", "admin@127.0.0.1\n")
	say("COPY\n", "copied admin\n")
	say("REPLACE abc\n", "got abc!\n")
	say("SECRET\n", "ERR unknown command\n")
	say("\n", "ERR empty\n")
	say("ADMIN LIST\n", "users: admin\n")
	say("QUIT\n", "Goodbye\n", "BYE\n")
	if _, err := r.ReadByte(); err == nil {
		t.Error("the connection is still open after the ending rule")
	}
	if err := srv.Stop(); err != nil {
		t.Fatalf("server run: %v", err)
	}
	got := strings.Join(captures(srv.Activities), " ")
	if got != "user=admin password=hunter2" {
		t.Errorf("captures: %s", got)
	}
}

// TestServeUDPClient lets the converted UDP client dial a test server: it says HELLO,
// answers OK 42 using a capture and a STR_MATCH with a \Z regex, splits a line as Lope does
// (extra pieces dropped), and ends on DONE; the connector then finishes by itself.
func TestServeUDPClient(t *testing.T) {
	srv, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	port := srv.LocalAddr().(*net.UDPAddr).Port
	client := serve(t, "testdata/udp_client.yml", func(o *connector.Options) { o.Port = &port })
	_ = srv.SetDeadline(time.Now().Add(wait))
	buf := make([]byte, 1024)
	read := func(want string) net.Addr {
		t.Helper()
		n, from, err := srv.ReadFrom(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("got %q (%v), want %q", buf[:n], err, want)
		}
		return from
	}
	peer := read("HELLO\n")
	for _, step := range []struct{ send, want string }{
		{"OK 42\n", "NEXT 42 true\n"},
		{"SPLIT a b\n", "a"},
		{"DONE\n", "BYE\n"},
	} {
		if _, err := srv.WriteTo([]byte(step.send), peer); err != nil {
			t.Fatal(err)
		}
		peer = read(step.want)
	}
	// the connector finishes by itself after the ending rule
	if err := client.Wait(); err != nil {
		t.Fatalf("client run: %v", err)
	}
	if got := strings.Join(captures(client.Activities), " "); got != "seq=42" {
		t.Errorf("captures: %s", got)
	}
}

// lineConn dials a served TCP file and returns a function that sends a line and reads the
// replies wanted, in order.
func lineConn(t *testing.T, srv *connectortest.Server) func(line string, replies ...string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", srv.Addr(), wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(wait))
	r := bufio.NewReader(conn)
	return func(line string, replies ...string) {
		t.Helper()
		if _, err := conn.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		for _, want := range replies {
			if got, err := r.ReadString('\n'); err != nil || got != want {
				t.Fatalf("after %q: got %q (%v), want %q", line, got, err, want)
			}
		}
	}
}

// TestServeFileOrder: rules whose ids are not ascending in the file fire as Lope fires them,
// in file order: the first in the file wins with conversation_use_only_first_hit, and rules
// firing together answer in file order.
func TestServeFileOrder(t *testing.T) {
	const rulesFile = `
enable_use: yes
operation: {port: 1, conversation_use_only_first_hit: %s}
conversation:
    custom_rules:
        rules:
          - {id: 5, mode: sync, regex: ^A, response: "first\n"}
          - {id: 3, mode: sync, regex: ^A, response: "second\n"}
`
	say := lineConn(t, serve(t, lopeFile(t, strings.Replace(rulesFile, "%s", "yes", 1)), nil))
	say("A\n", "first\n")
	say = lineConn(t, serve(t, lopeFile(t, strings.Replace(rulesFile, "%s", "no", 1)), nil))
	say("A\n", "first\n", "second\n")
}

// TestServeGroupsThatNeverApply: a group with neither regex nor conditions, or whose
// conditions could not be carried over, never applies, as in Lope; its async rule can still
// be scheduled.
func TestServeGroupsThatNeverApply(t *testing.T) {
	say := lineConn(t, serve(t, "testdata/group_never.yml", nil))
	say("X\n", "default\n")
	say("LATER\n", "ok\n", "scheduled\n")
}
