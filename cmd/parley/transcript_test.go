package main

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/internal/freeport"
)

// transcriptRules: a greeting, a capture, a default reply, an alerting ending rule.
const transcriptRules = `apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata: {name: cli}
spec:
  operation: {ip: 127.0.0.1, port: PORT}
  memory: {connection: [{name: user, type: string}]}
  conversation:
    greetings: {value: "220 ready\r\n"}
    default: {value: "500 what?\r\n"}
    rules:
    - {id: 1, mode: Sync, regex: "^USER", captures: [{regex: "^USER (\\w+)", variable: user}], response: "331 password for {{user}}\r\n"}
    - {id: 2, mode: Sync, regex: "^QUIT", response: "221 bye\r\n", ending: true, alert: true}
`

// variable parts of a transcript: timings, the peer's port, the rules' hash, the start.
var (
	offsets = regexp.MustCompile(`(?m)^\+\d+\.\d{3}s`)
	ports   = regexp.MustCompile(`127\.0\.0\.1:\d+`)
	hashes  = regexp.MustCompile(`sha256:[0-9a-f]{64}`)
	starts  = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z`)
	spaces  = regexp.MustCompile(` {2,}`) // the list's column widths depend on the ports
)

func normalize(s string) string {
	s = offsets.ReplaceAllString(s, "+N.NNNs")
	s = ports.ReplaceAllString(s, "127.0.0.1:PORT")
	s = hashes.ReplaceAllString(s, "sha256:HASH")
	return starts.ReplaceAllString(s, "TIME")
}

// TestTranscriptOfARealConversation runs parley run -o json, holds two conversations with
// it (one with a binary input), and prints them with parley transcript from the log.
func TestTranscriptOfARealConversation(t *testing.T) {
	port := freeport.T(t)
	logPath := filepath.Join(t.TempDir(), "log.json")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	var stderr connectortest.Output
	cmd := exec.Command(parleyBinary, "run", "-o", "json", writeFile(t, strings.Replace(transcriptRules, "PORT", strconv.Itoa(port), 1)))
	cmd.Stdout, cmd.Stderr = logFile, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	dial := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		deadline := time.Now().Add(processWait)
		for {
			c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err == nil {
				t.Cleanup(func() { c.Close() })
				_ = c.SetDeadline(time.Now().Add(processWait))
				return c, bufio.NewReader(c)
			}
			if time.Now().After(deadline) {
				t.Fatalf("port %d: %v\n%s", port, err, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	c, r := dial()
	for _, step := range []struct{ send, want string }{
		{"", "220 ready\r\n"},
		{"USER alice\r\n", "331 password for alice\r\n"},
		{"\x16\x03\x01\x00\x05\r\n", "500 what?\r\n"}, // a TLS record to an FTP-like service
		{"QUIT\r\n", "221 bye\r\n"},
	} {
		if step.send != "" {
			c.Write([]byte(step.send))
		}
		if got, err := r.ReadString('\n'); got != step.want {
			t.Fatalf("sent %q, got %q (%v)", step.send, got, err)
		}
	}
	c2, r2 := dial()
	if got, _ := r2.ReadString('\n'); got != "220 ready\r\n" {
		t.Fatalf("second greeting %q", got)
	}
	c2.Close()
	deadline := time.Now().Add(processWait)
	for {
		b, _ := os.ReadFile(logPath)
		if bytes.Count(b, []byte(`"type":"Ended"`)) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the conversations did not end:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}

	out, errOut, code := parley(t, "transcript", logPath, "c-000001")
	want := `Connector:  cli
Connection: c-000001 (TCP)
Peer:       127.0.0.1:PORT
Rules:      cli sha256:HASH
Started:    TIME

+N.NNNs  Connected
+N.NNNs  Greeted
         >> 220 ready\r\n
+N.NNNs  Input  rule 1  user="alice"
         << USER alice\r\n
         >> 331 password for alice\r\n
+N.NNNs  Input  default
         << 00000000  16 03 01 00 05 0d 0a                              |.......|
         >> 500 what?\r\n
+N.NNNs  Input  ALERT  rule 2
         << QUIT\r\n
         >> 221 bye\r\n
+N.NNNs  Ended  ending rule 2
`
	if code != 0 || normalize(out) != want {
		t.Errorf("exit %d, stderr %q, transcript:\n%s\nwant:\n%s", code, errOut, out, want)
	}

	// From standard input, the other conversation.
	in, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	tr := exec.Command(parleyBinary, "transcript", "-", "c-000002")
	tr.Stdin = in
	got, err := tr.Output()
	if err != nil || !strings.Contains(string(got), "Connection: c-000002 (TCP)") ||
		!strings.HasSuffix(string(got), "Ended  peer closed the connection\n") {
		t.Errorf("from stdin: %v\n%s", err, got)
	}

	// Without an id, two conversations are listed, and the command fails with a hint.
	out, errOut, code = parley(t, "transcript", "-f", logPath)
	wantList := "CONNECTION PEER STARTED INPUTS ALERTS\n" +
		"c-000001 127.0.0.1:PORT TIME 3 1\n" +
		"c-000002 127.0.0.1:PORT TIME 0 0\n"
	if code != 1 || spaces.ReplaceAllString(normalize(out), " ") != wantList ||
		errOut != "parley: 2 conversations: name one, as in: parley transcript c-000001\n" {
		t.Errorf("exit %d, stdout:\n%s\nstderr: %s", code, out, errOut)
	}
}

func TestTranscriptRefusesWhatItCannotRead(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"transcript"}, "parley: no activities: name a JSON activity log (- for standard input), or read the cluster's with --from-cluster\n"},
		{[]string{"transcript", "--from-cluster", "-f", "log.json"}, "parley: a log file and --from-cluster exclude each other\n"},
		{[]string{"transcript", "-f", "log.json", "c-1", "c-2"}, "parley: one conversation at a time: got [\"c-1\" \"c-2\"]\n"},
		{[]string{"transcript", filepath.Join(os.TempDir(), "no-such-parley-log.json")}, "no such file or directory"},
	} {
		out, errOut, code := parley(t, tc.args...)
		if code != 1 || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", tc.args, code, out, errOut)
		}
	}
}
