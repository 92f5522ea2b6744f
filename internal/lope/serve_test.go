package lope

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/connector/rules"
)

// These tests serve converted Lope files with the real connector and talk to them over
// real loopback sockets: the conversion is right when the conversation is.

const wait = 10 * time.Second

// sink keeps every activity.
type sink struct {
	mu   sync.Mutex
	acts []*v1alpha1.ActivityRecord
}

func (s *sink) Write(batch []*v1alpha1.ActivityRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acts = append(s.acts, batch...)
	return nil
}

// captures returns every capture recorded so far, as variable=value.
func (s *sink) captures() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, a := range s.acts {
		for _, c := range a.Captures {
			out = append(out, c.Variable+"="+c.Value)
		}
	}
	return out
}

// running is a connector serving a converted file.
type running struct {
	c    *connector.Connector
	acts *sink
	// finished is closed when Run has returned, with err.
	finished chan struct{}
	err      error
	stop     func()
}

// serve converts a testdata file, compiles it and runs it on loopback; override, if set,
// changes the options (client mode points them at a test server). stop (idempotent)
// cancels the connector, waits for it and flushes the activities.
func serve(t *testing.T, file string, override func(*connector.Options)) *running {
	t.Helper()
	res, err := Convert(file)
	if err != nil {
		t.Fatal(err)
	}
	prog, errs := rules.Compile(res.Rules.Name, 1, &res.Rules.Spec)
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	acts := &sink{}
	reg := activity.NewRegister(acts, 0, nil)
	go reg.Run()
	zero, loopback := 0, "127.0.0.1"
	opts := connector.Options{Name: res.Rules.Name, Register: reg, Port: &zero, IP: &loopback}
	if override != nil {
		override(&opts)
	}
	c, err := connector.New(prog, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{c: c, acts: acts, finished: make(chan struct{})}
	go func() {
		run.err = c.Run(ctx)
		close(run.finished)
	}()
	var once sync.Once
	run.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-run.finished:
			case <-time.After(wait):
				t.Error("connector did not stop")
			}
			flush, cancelFlush := context.WithTimeout(context.Background(), wait)
			defer cancelFlush()
			_ = reg.Close(flush)
		})
	}
	t.Cleanup(run.stop)
	select {
	case <-c.Ready():
	case <-run.finished:
		t.Fatalf("connector stopped: %v", run.err)
	case <-time.After(wait):
		t.Fatal("connector not ready")
	}
	return run
}

// TestServeTCPServer drives the converted IoT broker decoy line by line: the greeting with a
// generated id, Python's $ before a newline, a lookbehind capture, a delayed trigger, a yes/no
// update checked by a later condition, a STR_REPLACE with \1, a disabled rule, the empty and
// default rules, and a base64 ending rule followed by the base64 ending.
func TestServeTCPServer(t *testing.T) {
	srv := serve(t, "testdata/tcp_server.yml", nil)
	conn, err := net.DialTimeout("tcp", srv.c.Addr().String(), wait)
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
	srv.stop()
	got := strings.Join(srv.acts.captures(), " ")
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
	select {
	case <-client.finished:
		if client.err != nil {
			t.Fatalf("client run: %v", client.err)
		}
	case <-time.After(wait):
		t.Fatal("the client connector did not finish after the ending rule")
	}
	client.stop()
	if got := strings.Join(client.acts.captures(), " "); got != "seq=42" {
		t.Errorf("captures: %s", got)
	}
}
