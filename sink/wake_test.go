package sink

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/parley-dev/parley/internal/freeport"
)

// wakeWait bounds each wait for a call the context's end should wake at once: generous on
// a loaded machine, and short of for ever, which is how long the calls below would block.
const wakeWait = 20 * time.Second

// opResult is what a Read or Write returned.
type opResult struct {
	n   int
	err error
}

// woken waits for a blocked call's result after its context ended.
func woken(t *testing.T, done <-chan opResult) opResult {
	t.Helper()
	select {
	case r := <-done:
		if !errors.Is(r.err, os.ErrDeadlineExceeded) {
			t.Errorf("the woken call returned %v, want a deadline exceeded", r.err)
		}
		return r
	case <-time.After(wakeWait):
		t.Fatal("the context ended and the call is still blocked")
		return opResult{}
	}
}

// A write blocked on a synchronous pipe (as syslog's on a receiver that reads no more) is
// woken by its write deadline: the reader took one byte of two, so the writer is inside
// Write, waiting for the reader to take the other.
func TestWakeWhenDoneWakesABlockedWrite(t *testing.T) {
	writer, reader := net.Pipe()
	defer writer.Close()
	defer reader.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := wakeWhenDone(ctx, writer.SetWriteDeadline)
	defer stop()
	done := make(chan opResult, 1)
	go func() {
		n, err := writer.Write([]byte("ab"))
		done <- opResult{n, err}
	}()
	if _, err := reader.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if r := woken(t, done); r.n != 1 {
		t.Errorf("wrote %d bytes, want the 1 read", r.n)
	}
	// The write deadline only: the other direction still works.
	go func() { _, _ = reader.Write([]byte("c")) }()
	if _, err := writer.Read(make([]byte, 1)); err != nil {
		t.Errorf("read after the wake: %v", err)
	}
}

// A TCP connection on loopback, as email's: SetDeadline wakes both a write the peer stopped
// taking (it read a byte, so the write is under way, and then nothing of the megabytes the
// socket buffers cannot hold) and a read it never answers.
func TestWakeWhenDoneWakesTCPReadsAndWrites(t *testing.T) {
	l, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(freeport.T(t))))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	conn, err := net.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer := <-accepted
	if peer == nil {
		t.Fatal("no connection accepted")
	}
	defer peer.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := wakeWhenDone(ctx, conn.SetDeadline)
	defer stop()
	const size = 64 << 20 // far beyond both ends' socket buffers
	wrote := make(chan opResult, 1)
	go func() {
		n, err := conn.Write(make([]byte, size))
		wrote <- opResult{n, err}
	}()
	read := make(chan opResult, 1)
	go func() {
		n, err := conn.Read(make([]byte, 1))
		read <- opResult{n, err}
	}()
	if _, err := peer.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if r := woken(t, wrote); r.n <= 0 || r.n >= size {
		t.Errorf("wrote %d bytes, want part of %d", r.n, size)
	}
	woken(t, read)
}

// Stopped before the context ends (a Deliver that returned), it says so and leaves the
// connection alone: a write after the end still goes through.
func TestWakeWhenDoneStopped(t *testing.T) {
	writer, reader := net.Pipe()
	defer writer.Close()
	defer reader.Close()
	ctx, cancel := context.WithCancel(context.Background())
	stop := wakeWhenDone(ctx, writer.SetWriteDeadline)
	if !stop() {
		t.Fatal("stop did not stop it")
	}
	cancel()
	go func() { _, _ = reader.Read(make([]byte, 1)) }() // until the deferred Close, if the write fails
	if _, err := writer.Write([]byte("a")); err != nil {
		t.Errorf("write after a stopped wake: %v", err)
	}
}
