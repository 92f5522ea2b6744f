package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/evidence"
	"github.com/parley-dev/parley/internal/freeport"
)

// openssl makes the keys: the formats parley reads are the ones people have.
func opensslKeyPair(t *testing.T, dir, name string) (private, public string) {
	t.Helper()
	private, public = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".pub.pem")
	for _, args := range [][]string{
		{"genpkey", "-algorithm", "ed25519", "-out", private},
		{"pkey", "-in", private, "-pubout", "-out", public},
	} {
		if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v: %s (Debian package openssl)", args, err, out)
		}
	}
	return private, public
}

func runVerify(t *testing.T, key, log string) (string, int) {
	t.Helper()
	out, err := exec.Command(parleyBinary, "verify", "--key", key, log).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatal(err)
	return "", -1
}

// parley run --sign-key signs its log; parley verify checks it, and names a deleted and
// an edited line, and a wrong key.
func TestRunSignsAndVerifyChecks(t *testing.T) {
	dir := t.TempDir()
	private, public := opensslKeyPair(t, dir, "evidence")
	_, otherPublic := opensslKeyPair(t, dir, "other")
	logPath := filepath.Join(dir, "activities.jsonl")
	cmd := exec.Command(parleyBinary, "run", "-f", writeFile(t, validRules), "--port", "0", "--ip", "127.0.0.1",
		"-o", "none", "--log-file", logPath, "--sign-key", private)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stderr)
	var addr string
	for addr == "" && lines.Scan() {
		if _, after, ok := strings.Cut(lines.Text(), "listening on "); ok {
			addr = strings.TrimSuffix(after, "/TCP")
		}
	}
	conn, err := net.DialTimeout("tcp", addr, processWait)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	r.ReadString('\n')
	// The last input is not valid UTF-8: its hash is of the record as a reader of the log
	// sees it (each invalid byte U+FFFD), which verify recomputes.
	for _, in := range []string{"PING\r\n", "PING\r\n", "PING \xff\xfe\xc3\r\n"} {
		conn.Write([]byte(in))
		if pong, _ := r.ReadString('\n'); pong != "+PONG\r\n" {
			t.Fatalf("got %q", pong)
		}
	}
	conn.Close()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("parley run: %v", err)
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	log := strings.SplitAfter(strings.TrimSuffix(string(data), "\n"), "\n")
	// Started, Connected, Greeted, 3 Inputs, Ended, Stopped, and the final checkpoint.
	if len(log) != 9 || !strings.HasPrefix(log[8], `{"checkpoint":`) {
		t.Fatalf("log of %d lines, want 8 activities and a checkpoint:\n%s", len(log), data)
	}

	out, code := runVerify(t, public, logPath)
	if code != 0 || !strings.Contains(out, "records 1-8 (8), 1 checkpoints, signed up to 8") {
		t.Fatalf("intact log: exit %d:\n%s", code, out)
	}
	write := func(name string, lines []string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Join(lines, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	deleted := write("deleted.jsonl", append(append([]string(nil), log[:4]...), log[5:]...))
	if out, code := runVerify(t, public, deleted); code != 1 || !strings.Contains(out, "gap: seq 5 missing") {
		t.Errorf("deleted line: exit %d:\n%s", code, out)
	}
	edited := append([]string(nil), log...)
	edited[3] = strings.Replace(edited[3], `"text":"PING\r\n"`, `"text":"PONG\r\n"`, 1)
	if edited[3] == log[3] {
		t.Fatalf("line 4 has no PING input: %s", log[3])
	}
	// A compact line has no hash of its own: the checkpoint after it no longer matches.
	if strings.Contains(log[3], `"hash"`) {
		t.Fatalf("line 4 is not compact: %s", log[3])
	}
	if out, code := runVerify(t, public, write("edited.jsonl", edited)); code != 1 || !strings.Contains(out, "seq 8): checkpoint-mismatch") {
		t.Errorf("edited line: exit %d:\n%s", code, out)
	}
	if out, code := runVerify(t, otherPublic, logPath); code != 1 || !strings.Contains(out, "bad-signature") {
		t.Errorf("wrong key: exit %d:\n%s", code, out)
	}
	if out, code := runVerify(t, filepath.Join(dir, "missing.pem"), logPath); code != 2 || !strings.Contains(out, "--key") {
		t.Errorf("missing key: exit %d:\n%s", code, out)
	}
}

// An output that takes nothing more (a pipe nobody reads) does not hold the stop: the
// activities it did not take are counted, and the last checkpoints, which would go to the
// same output, are given up with the flush's time rather than waited for for ever.
func TestRunStopsWhenItsOutputStalls(t *testing.T) {
	dir := t.TempDir()
	private, _ := opensslKeyPair(t, dir, "evidence")
	port := freeport.T(t)
	stalled, stdout, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close() // never read: the pipe fills and the output blocks
	cmd := exec.Command(parleyBinary, "run", "-f", writeFile(t, validRules), "--port", strconv.Itoa(port),
		"--ip", "127.0.0.1", "-o", "json", "--sign-key", private)
	cmd.Stdout = stdout
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdout.Close()
	defer cmd.Process.Kill()
	var conn net.Conn
	deadline := time.Now().Add(processWait)
	for conn == nil {
		if conn, err = net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err != nil {
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond) // not serving yet
		}
	}
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	for range 2000 { // far more activity lines than a pipe's buffer holds
		if _, err := conn.Write([]byte("PING\r\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(60 * time.Second): // the flush's 10 s, which bounds the signing too, generously
		cmd.Process.Kill()
		<-exited
		t.Fatalf("parley run did not stop with its output stalled:\n%s", stderr.String())
	}
	for _, want := range []string{"activities not all printed", "the last evidence checkpoints not all signed"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}

// setSignCloseTime sets the fixed bound on signing the last checkpoints for one test.
func setSignCloseTime(t *testing.T, d time.Duration) {
	t.Helper()
	old := signCloseTime
	signCloseTime = d
	t.Cleanup(func() { signCloseTime = old })
}

func setSignGrace(t *testing.T, d time.Duration) {
	t.Helper()
	old := signGrace
	signGrace = d
	t.Cleanup(func() { signGrace = old })
}

// signingInto signs the JSON activities written to each of outputs, as `parley run -o json
// --sign-key` (and --log-file) does, and writes one activity to each: one checkpoint each
// is left for closeAll to sign.
func signingInto(t *testing.T, stderr io.Writer, outputs ...io.Writer) (closeAll func(context.Context)) {
	t.Helper()
	private, _ := opensslKeyPair(t, t.TempDir(), "evidence")
	o := runOptions{signKey: private, output: "json", jsonLines: "compact"}
	signTo, closeAll, err := checkpointSigning(o, false, stderr)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range outputs {
		out := signTo(jsonSink(o, w), evidence.CheckpointLines(w))
		if err := out.Write([]*v1alpha1.ActivityRecord{{Connector: "pinger", Type: v1alpha1.ActivityInput,
			Evidence: &v1alpha1.EvidenceRecord{Chain: "c0ffee", Seq: 1, Hash: "sha256:" + strings.Repeat("0", 64)}}}); err != nil {
			t.Fatal(err)
		}
	}
	return closeAll
}

// readPipe is a pipe whose read end is read to its end on a goroutine of its own: what was
// written comes once w is closed.
func readPipe(t *testing.T) (w *os.File, read <-chan []byte) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	out := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(r)
		out <- b
	}()
	return w, out
}

// wantSigned fails unless out is the activity signingInto writes and its checkpoint.
func wantSigned(t *testing.T, out []byte) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], `{"checkpoint":{"chain":"c0ffee","seq":1,`) {
		t.Errorf("output, want the activity and its checkpoint:\n%s", strings.Join(lines, "\n"))
	}
}

// fillPipe fills w, a pipe nobody reads, without blocking: the next write to it blocks
// until the read end closes (at the end of the test).
func fillPipe(t *testing.T, r, w *os.File) {
	t.Helper()
	t.Cleanup(func() { r.Close() }) // the blocked writes fail and return
	rc, err := w.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		for werr == nil {
			_, werr = syscall.Write(int(fd), chunk) // the pipe is non-blocking: EAGAIN when full
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(werr, syscall.EAGAIN) {
		t.Fatalf("filling the pipe: %v", werr)
	}
}

// closeWithin runs closeAll(ctx) and fails the test if it does not return within
// processWait: far sooner than the hour a test stretches the other bound to.
func closeWithin(t *testing.T, ctx context.Context, closeAll func(context.Context)) {
	t.Helper()
	closed := make(chan struct{})
	go func() {
		closeAll(ctx)
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(processWait):
		t.Fatal("closing the signers did not end with the bound under test")
	}
}

// The stop signs the last checkpoints within what is left of its flush's time, and for
// signCloseTime at most: a flush that a stalled output ran out of time leaves nothing, and
// the stop ends signGrace later, rather than signCloseTime later, once the outputs still
// taking writes have had their last checkpoint. Each case stretches the bounds it does not
// test to an hour, so that only the one under test can have ended the wait.
func TestCloseSigningEndsWithinTheFlushsTime(t *testing.T) {
	const gaveUp = "parley: the last evidence checkpoints not all signed: an output takes nothing more\n"
	// stalled is a pipe whose reader will take nothing more once stall has filled it (after
	// the activity signingInto writes).
	stalled := func(t *testing.T) (w *os.File, stall func()) {
		t.Helper()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		return w, func() { fillPipe(t, r, w) }
	}
	flushOutOfTime := func(t *testing.T) context.Context {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now()) // the flush took all its time
		t.Cleanup(cancel)
		return ctx
	}
	t.Run("a flush out of time, an output stalled", func(t *testing.T) {
		setSignCloseTime(t, time.Hour)
		setSignGrace(t, time.Millisecond)
		var stderr connectortest.Output // the blocked signer reports to it after the test
		out, stall := stalled(t)
		closeAll := signingInto(t, &stderr, out)
		stall()
		closeWithin(t, flushOutOfTime(t), closeAll)
		if got := stderr.String(); got != gaveUp {
			t.Errorf("stderr %q, want %q", got, gaveUp)
		}
	})
	t.Run("a flush out of time: the output beside the stalled one is signed", func(t *testing.T) {
		// A --log-file beside a standard output that stalled the flush.
		setSignCloseTime(t, time.Hour)
		setSignGrace(t, 3*time.Second) // one checkpoint takes a few milliseconds
		w, read := readPipe(t)
		var stderr connectortest.Output
		out, stall := stalled(t)
		closeAll := signingInto(t, &stderr, out, w)
		stall()
		closeWithin(t, flushOutOfTime(t), closeAll)
		w.Close()
		wantSigned(t, <-read)
		if got := stderr.String(); got != gaveUp {
			t.Errorf("stderr %q, want %q", got, gaveUp)
		}
	})
	t.Run("no deadline, an output stalled", func(t *testing.T) {
		setSignCloseTime(t, time.Millisecond)
		setSignGrace(t, time.Hour)
		var stderr connectortest.Output
		out, stall := stalled(t)
		closeAll := signingInto(t, &stderr, out)
		stall()
		closeWithin(t, context.Background(), closeAll) // as on an early return
		if got := stderr.String(); got != gaveUp {
			t.Errorf("stderr %q, want %q", got, gaveUp)
		}
	})
	t.Run("time left, the output takes the checkpoint", func(t *testing.T) {
		setSignCloseTime(t, time.Hour)
		w, read := readPipe(t)
		var stderr connectortest.Output
		closeAll := signingInto(t, &stderr, w)
		flushCtx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		closeWithin(t, flushCtx, closeAll)
		w.Close()
		wantSigned(t, <-read)
		if got := stderr.String(); got != "" {
			t.Errorf("stderr %q", got)
		}
	})
}
