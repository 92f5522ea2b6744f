package connectortest_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/connectortest"
)

func TestCollectorWaitForSeesLaterWrites(t *testing.T) {
	var c connectortest.Collector
	go func() {
		for i := range 5 {
			time.Sleep(5 * time.Millisecond)
			typ := v1alpha1.ActivityInput
			if i%2 == 1 {
				typ = v1alpha1.ActivityConnected
			}
			_ = c.Write([]*v1alpha1.ActivityRecord{{Type: typ, Message: fmt.Sprint(i)}})
		}
	}()
	got := c.WaitFor(t, v1alpha1.ActivityInput, 3)
	if len(got) != 3 || got[0].Message != "0" || got[2].Message != "4" {
		t.Errorf("WaitFor: %+v", got)
	}
	if c.Len() != 5 || len(c.All()) != 5 || len(c.Of(v1alpha1.ActivityConnected)) != 2 {
		t.Errorf("Len %d, All %d, Of %d", c.Len(), len(c.All()), len(c.Of(v1alpha1.ActivityConnected)))
	}
	all := c.All()
	all[0] = nil
	if c.All()[0] == nil {
		t.Error("All returns the collector's own slice")
	}
	if d := c.Dump(); strings.Count(d, "---\n") != 5 || !strings.Contains(d, "message: \"4\"") {
		t.Errorf("Dump:\n%s", d)
	}
}

func TestBufferIsSafeForConcurrentUse(t *testing.T) {
	var b connectortest.Buffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				_, _ = io.WriteString(&b, "x")
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if n := len(b.String()); n != 400 {
		t.Errorf("%d bytes", n)
	}
}

func TestStartServesOnLoopbackAndStopFlushes(t *testing.T) {
	srv := connectortest.Start(t, connectortest.Compile(t, `
operation: {port: 1}
conversation: {greetings: {value: "hi;"}}
`))
	if host, _, _ := net.SplitHostPort(srv.Addr()); host != "127.0.0.1" {
		t.Errorf("Addr %s", srv.Addr())
	}
	conn, err := net.DialTimeout("tcp", srv.Addr(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	greeting := make([]byte, 3)
	if _, err := io.ReadFull(conn, greeting); err != nil || string(greeting) != "hi;" {
		t.Fatalf("greeting %q (%v)", greeting, err)
	}
	srv.Activities.WaitFor(t, v1alpha1.ActivityConnected, 1)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	all := srv.Activities.All()
	if last := all[len(all)-1]; last.Type != v1alpha1.ActivityConnectorStopped {
		t.Errorf("last activity after Stop: %s\n%s", last.Type, srv.Activities.Dump())
	}
}

func TestStartClientAndWait(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := connectortest.Start(t, connectortest.Compile(t, fmt.Sprintf(`
operation: {mode: Client, ip: 127.0.0.1, port: %d, maxConcurrentConnections: 1}
conversation:
  greetings: {value: "HELLO\n"}
  rules: [{id: 1, mode: Sync, regex: "WELCOME", response: "BYE\n", ending: true}]
`, ln.Addr().(*net.TCPAddr).Port)))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	if line, err := r.ReadString('\n'); err != nil || line != "HELLO\n" {
		t.Fatalf("got %q (%v)", line, err)
	}
	if _, err := io.WriteString(conn, "WELCOME\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "BYE\n" {
		t.Fatalf("got %q (%v)", line, err)
	}
	if err := srv.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Activities.Of(v1alpha1.ActivityEnded)); n != 1 {
		t.Errorf("%d Ended; activities:\n%s", n, srv.Activities.Dump())
	}
}
