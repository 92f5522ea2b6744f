package connector

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/parley-dev/parley/internal/freeport"
)

// The plain TCP read path (readiness.readInto) against net.Conn.Read, over real loopback
// connections: each scenario is played once with each reader, on a fresh connection, and
// both must see the same reads (bytes and errors, addresses aside).

// readFunc reads once from the server's end, as readLoop does, with a buffer of size bytes.
type readFunc func(size int) ([]byte, error)

func readWithReadiness(t *testing.T, conn *net.TCPConn) readFunc {
	w := newReadiness(conn)
	if w == nil {
		t.Fatal("no readiness reader for a plain TCP connection")
	}
	return func(size int) ([]byte, error) {
		lent, n, err := w.readInto(conn, size)
		if lent == nil {
			if n != 0 {
				t.Errorf("%d bytes read, no buffer", n)
			}
			return nil, err
		}
		if cap(*lent) < size {
			t.Errorf("lent a buffer of %d bytes for a read of %d", cap(*lent), size)
		}
		b := append([]byte(nil), (*lent)[:n]...)
		readBuffers.Put(lent)
		return b, err
	}
}

func readWithConn(conn *net.TCPConn) readFunc {
	return func(size int) ([]byte, error) {
		buf := make([]byte, size)
		n, err := conn.Read(buf)
		return buf[:n], err
	}
}

// tcpPair returns both ends of a real loopback TCP connection.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: freeport.T(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.Close()
		_ = server.Close()
	})
	return server, client
}

// waitSocket waits until cond holds of conn's socket (a generous wait: it should hold at
// once on loopback).
func waitSocket(t *testing.T, conn *net.TCPConn, what string, cond func(fd int) bool) {
	t.Helper()
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := false
		if err := rc.Control(func(fd uintptr) { ok = cond(int(fd)) }); err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitQueued waits until n bytes are queued on conn's socket, unread.
func waitQueued(t *testing.T, conn *net.TCPConn, n int) {
	t.Helper()
	waitSocket(t, conn, fmt.Sprintf("%d bytes queued", n), func(fd int) bool {
		q, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
		return err == nil && q == n
	})
}

// trace records reads as text: the bytes, then the error with the connection's addresses
// replaced, and what the error is.
type trace struct {
	t      *testing.T
	server *net.TCPConn
	read   readFunc
	lines  []string
	// guard bounds each read with a generous deadline, so that a read that should
	// return at once fails the test rather than hang it (not for scenarios that set
	// deadlines of their own).
	guard bool
}

func (tr *trace) readN(size int) {
	tr.t.Helper()
	if tr.guard {
		_ = tr.server.SetReadDeadline(time.Now().Add(30 * time.Second))
	}
	b, err := tr.read(size)
	line := fmt.Sprintf("%q", b)
	if err != nil {
		msg := strings.NewReplacer(tr.server.LocalAddr().String(), "LOCAL", tr.server.RemoteAddr().String(), "REMOTE").Replace(err.Error())
		var op *net.OpError
		line += fmt.Sprintf(" %s eof=%v timeout=%v reset=%v closed=%v opError=%v", msg, errors.Is(err, io.EOF),
			errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed), errors.As(err, &op))
	}
	tr.lines = append(tr.lines, line)
}

func (tr *trace) readOnce() { tr.t.Helper(); tr.readN(16) }

var readScenarios = []struct {
	name string
	play func(t *testing.T, server, client *net.TCPConn, tr *trace)
	want []string
	// deadlines: the scenario sets the reads' deadlines itself.
	deadlines bool
}{{
	// Each read takes what has arrived: one segment, several segments together, or a
	// buffer's worth of a longer one.
	name: "segments",
	play: func(t *testing.T, server, client *net.TCPConn, tr *trace) {
		write(t, client, "PI")
		waitQueued(t, server, 2)
		tr.readOnce()
		write(t, client, "NG")
		waitQueued(t, server, 2)
		tr.readOnce()
		write(t, client, "AB")
		write(t, client, "CD")
		write(t, client, "EF")
		waitQueued(t, server, 6)
		tr.readOnce()
		write(t, client, "0123456789")
		waitQueued(t, server, 10)
		tr.readN(4)
		tr.readN(4)
		tr.readN(4)
	},
	want: []string{`"PI"`, `"NG"`, `"ABCDEF"`, `"0123"`, `"4567"`, `"89"`},
}, {
	// A peer that half-closes: what it sent before its FIN, then io.EOF, again and again;
	// the other direction still works.
	name: "half-close",
	play: func(t *testing.T, server, client *net.TCPConn, tr *trace) {
		write(t, client, "QUIT")
		if err := client.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		tr.readOnce()
		tr.readOnce()
		tr.readOnce()
		write(t, server, "bye")
		got := make([]byte, 3)
		if _, err := io.ReadFull(client, got); err != nil || string(got) != "bye" {
			t.Errorf("after the half-close the peer read %q, %v", got, err)
		}
	},
	want: []string{`"QUIT"`, `"" EOF eof=true timeout=false reset=false closed=false opError=false`,
		`"" EOF eof=true timeout=false reset=false closed=false opError=false`},
}, {
	// A peer that resets the connection, with data unread: the data, then the reset as a
	// *net.OpError, then io.EOF.
	name: "reset",
	play: func(t *testing.T, server, client *net.TCPConn, tr *trace) {
		write(t, client, "data")
		waitQueued(t, server, 4)
		_ = client.SetLinger(0) // close with RST
		_ = client.Close()
		waitSocket(t, server, "the reset", func(fd int) bool {
			info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
			return err == nil && info.State == 7 // TCP_CLOSE
		})
		tr.readOnce()
		tr.readOnce()
		tr.readOnce()
	},
	want: []string{`"data"`,
		`"" read tcp4 LOCAL->REMOTE: read: connection reset by peer eof=false timeout=false reset=true closed=false opError=true`,
		`"" EOF eof=true timeout=false reset=false closed=false opError=false`},
}, {
	// Data queued when the deadline has passed: the deadline wins, the data waits for the
	// next read (given a generous deadline); a deadline that passes while the read waits,
	// then data.
	name: "deadline",
	play: func(t *testing.T, server, client *net.TCPConn, tr *trace) {
		write(t, client, "early")
		waitQueued(t, server, 5)
		_ = server.SetReadDeadline(time.Now().Add(-time.Second))
		tr.readOnce()
		_ = server.SetReadDeadline(time.Now().Add(30 * time.Second))
		tr.readOnce()
		_ = server.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		tr.readOnce() // waits for the deadline
		write(t, client, "late")
		waitQueued(t, server, 4)
		tr.readOnce() // the deadline has passed
		_ = server.SetReadDeadline(time.Now().Add(30 * time.Second))
		tr.readOnce()
		_ = server.Close()
		tr.readOnce()
	},
	want: []string{
		`"" read tcp4 LOCAL->REMOTE: i/o timeout eof=false timeout=true reset=false closed=false opError=true`,
		`"early"`,
		`"" read tcp4 LOCAL->REMOTE: i/o timeout eof=false timeout=true reset=false closed=false opError=true`,
		`"" read tcp4 LOCAL->REMOTE: i/o timeout eof=false timeout=true reset=false closed=false opError=true`,
		`"late"`,
		`"" read tcp4 LOCAL->REMOTE: use of closed network connection eof=false timeout=false reset=false closed=true opError=true`},
	deadlines: true,
}}

func write(t *testing.T, conn *net.TCPConn, s string) {
	t.Helper()
	if _, err := conn.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func TestReadinessReadsAsConnRead(t *testing.T) {
	for _, sc := range readScenarios {
		t.Run(sc.name, func(t *testing.T) {
			var traces [2][]string
			for i, name := range []string{"conn.Read", "readInto"} {
				server, client := tcpPair(t)
				read := readWithConn(server)
				if i == 1 {
					read = readWithReadiness(t, server)
				}
				tr := &trace{t: t, server: server, read: read, guard: !sc.deadlines}
				sc.play(t, server, client, tr)
				traces[i] = tr.lines
				if got, want := strings.Join(tr.lines, "\n"), strings.Join(sc.want, "\n"); got != want {
					t.Errorf("%s read:\n%s\nwant:\n%s", name, got, want)
				}
			}
		})
	}
}

// Data that arrives about when the read's deadline passes is read whole, once, in order,
// by the next reads, whichever wins: each read returns bytes or a timeout, nothing else.
func TestReadinessLosesNothingAtADeadline(t *testing.T) {
	server, client := tcpPair(t)
	read := readWithReadiness(t, server)
	var got strings.Builder
	want := ""
	for i := range 50 {
		msg := fmt.Sprintf("<%d>", i)
		want += msg
		_ = server.SetReadDeadline(time.Now().Add(time.Millisecond))
		sent := make(chan error, 1)
		go func() {
			time.Sleep(time.Millisecond) // about the deadline: either may come first
			_, err := client.Write([]byte(msg))
			sent <- err
		}()
		waited := false
		for got.Len() < len(want) {
			b, err := read(64)
			got.Write(b)
			switch {
			case err == nil:
			case errors.Is(err, os.ErrDeadlineExceeded) && !waited:
				waited = true // the rest with a generous wait
				_ = server.SetReadDeadline(time.Now().Add(30 * time.Second))
			default:
				t.Fatalf("read %d: %v after %q", i, err, got.String())
			}
		}
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
	}
	if got.String() != want {
		t.Errorf("read %q, want %q", got.String(), want)
	}
}
