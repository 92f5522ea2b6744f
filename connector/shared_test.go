package connector_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector"
	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/connector/sharedmemory"
	"github.com/parley-dev/parley/connector/sharedmemory/redistest"
)

// sharedStores runs a test against the in-process store and a real redis-server.
func sharedStores(t *testing.T, test func(t *testing.T, store sharedmemory.Store)) {
	t.Run("memory", func(t *testing.T) { test(t, sharedmemory.NewMemory()) })
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Options{})
		test(t, newRedisStore(t, srv))
	})
}

func newRedisStore(t *testing.T, srv *redistest.Server) *sharedmemory.Redis {
	t.Helper()
	s, err := sharedmemory.NewRedis(context.Background(), srv.URL(), sharedmemory.RedisOptions{Namespace: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func withStore(s sharedmemory.Store) func(*connector.Options) {
	return func(o *connector.Options) { o.SharedMemory = s }
}

const counterRules = `
operation: {port: 1, memoryUpdateWhen: Detected, maxConcurrentConnections: 100}
memory:
  shared: [{name: count, type: int, default: "0"}]
  connection: [{name: seen, type: int, default: "0"}]
conversation:
  default: {value: "?\n"}
  rules:
  - {id: 1, mode: Sync, regex: "^INC", response: "{{count}}\n", operation: {name: NBR_SUM, inputs: [count, "1"], outputs: [count]}}
  - {id: 2, mode: Sync, regex: "^GET", response: "{{count}}\n"}
  - {id: 3, mode: Sync, regex: "^PING", response: "PONG\n"}
  - {id: 4, mode: Sync, regex: "^LOCAL", response: "{{seen}}\n", operation: {name: NBR_SUM, inputs: [seen, "1"], outputs: [seen]}}`

// Two connectors, each incrementing one shared counter 10,000 times through a rule over
// real sockets, end at exactly 20,000: no step loses another's update. On Redis, twice: the
// two connectors of one process share a store (their steps are batched), and as two
// processes would, each with its own client (their transactions conflict and retry).
func TestSharedCounterLosesNoUpdateAcrossConnectors(t *testing.T) {
	if testing.Short() {
		t.Skip("20,000 round trips through the store")
	}
	t.Run("memory", func(t *testing.T) {
		s := sharedmemory.NewMemory()
		countTo20000(t, s, s)
	})
	t.Run("redis-one-process", func(t *testing.T) {
		s := newRedisStore(t, redistest.Start(t, redistest.Options{}))
		countTo20000(t, s, s)
	})
	t.Run("redis-two-processes", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Options{})
		countTo20000(t, newRedisStore(t, srv), newRedisStore(t, srv))
	})
}

func countTo20000(t *testing.T, storeA, storeB sharedmemory.Store) {
	t.Helper()
	const each = 10000
	a := start(t, counterRules, withStore(storeA))
	b := start(t, counterRules, withStore(storeB))
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, h := range []*harness{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", h.Addr())
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			r := bufio.NewReader(conn)
			for range each {
				if _, err := conn.Write([]byte("INC\n")); err != nil {
					errs <- err
					return
				}
				if _, err := r.ReadString('\n'); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	a.dial().exchange("GET\n", "20000\n")
	b.dial().exchange("GET\n", "20000\n")
	if e := a.Activities.Of(v1alpha1.ActivityError); len(e) > 0 {
		t.Fatalf("errors: %v", e[0].Message)
	}
}

// A rule's condition and update over a shared flag are one step: of many peers knocking
// at two connectors at once, exactly one is first.
func TestSharedConditionAndUpdateAreOneStep(t *testing.T) {
	const rulesYAML = `
operation: {port: 1, maxConcurrentConnections: 100}
memory: {shared: [{name: open, type: bool, default: "false"}]}
conversation:
  default: {value: "late\n"}
  rules:
  - {id: 1, mode: Sync, regex: "^KNOCK", conditions: [{variable: open, value: "false"}], updates: [{variable: open, value: "true"}], response: "first\n"}`
	sharedStores(t, func(t *testing.T, store sharedmemory.Store) {
		hs := []*harness{start(t, rulesYAML, withStore(store)), start(t, rulesYAML, withStore(store))}
		const peers = 20
		replies := make(chan string, peers)
		var wg sync.WaitGroup
		for i := range peers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := net.Dial("tcp", hs[i%2].Addr())
				if err != nil {
					replies <- err.Error()
					return
				}
				defer conn.Close()
				_, _ = conn.Write([]byte("KNOCK\n"))
				line, _ := bufio.NewReader(conn).ReadString('\n')
				replies <- line
			}()
		}
		wg.Wait()
		close(replies)
		firsts := 0
		for r := range replies {
			switch r {
			case "first\n":
				firsts++
			case "late\n":
			default:
				t.Fatalf("reply %q", r)
			}
		}
		if firsts != 1 {
			t.Fatalf("%d peers were first", firsts)
		}
	})
}

// Redis stopped mid-conversation: the rule on shared memory becomes an Error activity, the
// conversation goes on and answers its other rules, and the steps work again once Redis is
// back. No goroutine is left behind.
func TestSharedStoreDownMidConversation(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := redistest.Start(t, redistest.Options{})
	store, err := sharedmemory.NewRedis(context.Background(), srv.URL(), sharedmemory.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{Server: connectortest.Start(t, connectortest.Compile(t, counterRules), withStore(store)), t: t}
	p := h.dial()
	p.exchange("INC\n", "1\n")
	srv.Stop()
	p.exchange("INC\n", "?\n") // the rule is skipped, the default answers
	p.exchange("PING\n", "PONG\n")
	p.exchange("LOCAL\n", "1\n")
	p.exchange("GET\n", "?\n")
	h.Activities.WaitFor(t, v1alpha1.ActivityInput, 5) // the register keeps order: what came before is in
	var msgs []string
	for _, a := range h.Activities.Of(v1alpha1.ActivityError) {
		msgs = append(msgs, a.Message)
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"shared memory lost: shared memory redis://127.0.0.1", "shared memory step failed, the rules on shared variables are skipped"} {
		if !strings.Contains(all, want) {
			t.Errorf("no Error activity %q in\n%s", want, all)
		}
	}
	if h.Connector.SharedMemoryHealthy() || h.Connector.Stats().SharedMemoryErrors < 2 {
		t.Errorf("health %v, errors %d", h.Connector.SharedMemoryHealthy(), h.Connector.Stats().SharedMemoryErrors)
	}
	srv.Restart() // without persistence: the counter starts again from its default
	p.exchange("INC\n", "1\n")
	h.Activities.WaitFor(t, v1alpha1.ActivityInput, 6)
	if !h.Connector.SharedMemoryHealthy() {
		t.Error("not healthy after recovery")
	}
	if !slicesContains(h.Activities.Of(v1alpha1.ActivityError), "shared memory recovered") {
		t.Error("no recovery activity")
	}
	p.conn.Close()
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	_ = store.Close()
	srv.Stop()
}

func slicesContains(acts []*v1alpha1.ActivityRecord, msg string) bool {
	for _, a := range acts {
		if strings.Contains(a.Message, msg) {
			return true
		}
	}
	return false
}

// A client with startWhen waits, visibly, until a server connector's rule publishes the
// target in shared memory, then dials it.
func TestStartWhenWaitsThenDials(t *testing.T) {
	testStartWhen(t, `{conditions: [{variable: go, value: "true"}], portFromVariable: target_port}`)
}

// A CEL when over shared variables holds the client back as conditions do.
func TestStartWhenWaitsOnCEL(t *testing.T) {
	testStartWhen(t, `{when: "go && target_port > 0", portFromVariable: target_port}`)
}

// testStartWhen runs a client whose startWhen is startWhen until a server's rule publishes
// the port it dials.
func testStartWhen(t *testing.T, startWhen string) {
	t.Helper()
	const serverRules = `
operation: {port: 1}
memory:
  shared: [{name: go, type: bool, default: "false"}, {name: target_port, type: int, default: "0"}]
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "^GO \\d+", captures: [{regex: "^GO (\\d+)", variable: target_port}], updates: [{variable: go, value: "true"}], response: "ok\n"}`
	clientRules := `
operation:
  mode: Client
  ip: 127.0.0.1
  port: 1
  maxConcurrentConnections: 1
  startWhen: ` + startWhen + `
memory:
  shared: [{name: go, type: bool, default: "false"}, {name: target_port, type: int, default: "0"}]
conversation:
  greetings: {value: "HELLO {{target_port}}\n"}
  rules:
  - {id: 1, mode: Sync, regex: "^BYE", ending: true}`
	sharedStores(t, func(t *testing.T, store sharedmemory.Store) {
		server := start(t, serverRules, withStore(store))
		client := connectortest.Start(t, connectortest.Compile(t, clientRules), withStore(store))
		started := client.Activities.WaitFor(t, v1alpha1.ActivityConnectorStarted, 1)
		if !strings.Contains(started[0].Message, "waiting until operation.startWhen holds") {
			t.Fatalf("start: %q", started[0].Message)
		}
		// The target only exists now: the client could not have dialed it before.
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		port := l.Addr().(*net.TCPAddr).Port
		server.dial().exchange(fmt.Sprintf("GO %d\n", port), "ok\n")
		conn, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		line, err := bufio.NewReader(conn).ReadString('\n')
		if want := fmt.Sprintf("HELLO %d\n", port); err != nil || line != want {
			t.Fatalf("client said %q (%v), want %q", line, err, want)
		}
		held := client.Activities.WaitFor(t, v1alpha1.ActivityConnectorStarted, 2)[1]
		if !strings.Contains(held.Message, "operation.startWhen holds after") || !strings.Contains(held.Message, fmt.Sprintf("127.0.0.1:%d", port)) {
			t.Fatalf("end of the wait: %q", held.Message)
		}
		_, _ = conn.Write([]byte("BYE\n"))
		if err := client.Wait(); err != nil {
			t.Fatal(err)
		}
	})
}

// A waiting client ends on Shutdown, without a deadline of its own and without leaving a
// goroutine behind, on both stores.
func TestStartWhenWaitEndsOnShutdown(t *testing.T) {
	sharedStores(t, func(t *testing.T, store sharedmemory.Store) {
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		prog := connectortest.Compile(t, `
operation:
  mode: Client
  ip: 127.0.0.1
  port: 1
  startWhen: {conditions: [{variable: go, value: "true"}]}
memory: {shared: [{name: go, type: bool}]}`)
		acts := &connectortest.Collector{}
		reg := newRegister(acts)
		c, err := connector.New(prog, connector.Options{Name: "c", Register: reg, SharedMemory: store})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.RunClients() }()
		acts.WaitFor(t, v1alpha1.ActivityConnectorStarted, 1)
		if err := c.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, connector.ErrServerClosed) {
			t.Fatalf("RunClients: %v", err)
		}
		if len(acts.Of(v1alpha1.ActivityConnected)) > 0 {
			t.Fatal("dialed without startWhen holding")
		}
		acts.WaitFor(t, v1alpha1.ActivityConnectorStopped, 1)
		_ = reg.Close(context.Background())
	})
}
