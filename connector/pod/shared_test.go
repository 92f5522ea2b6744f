package pod_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/pod"
	"github.com/parley-dev/parley/connector/sharedmemory/redistest"
	"github.com/parley-dev/parley/connector/uplink/uplinktest"
	"github.com/parley-dev/parley/internal/freeport"
	"github.com/parley-dev/parley/internal/volumetest"
)

const wordSpec = `
operation: {port: 7000, identifyBy: Address}
memory: {shared: [{name: word, type: string, default: "none"}]}
conversation:
  greetings: {value: "+OK ready\r\n"}
  default: {value: "-ERR\r\n"}
  rules:
  - {id: 1, mode: Sync, regex: "^SET", response: "+OK {{word}}\r\n", captures: [{regex: "^SET (\\w+)", variable: word}]}
  - {id: 2, mode: Sync, regex: "^GET", response: "+{{word}}\r\n"}
`

// secretDir writes the shared-memory keys of an engine Secret as the kubelet mounts them.
func secretDir(t *testing.T, srv *redistest.Server, password string) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		v1alpha1.SharedMemoryURLKey:      "redis://" + srv.Addr() + "/0",
		v1alpha1.SharedMemoryPasswordKey: password,
	} {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// sharedPod runs a pod process of namespace whose engine Secret, mounted at dir, names the
// store, and returns the port it serves on.
func sharedPod(t *testing.T, namespace, dir string) (*uplinktest.Engine, int) {
	t.Helper()
	e := uplinktest.New(t)
	e.SetToken(engineToken)
	port := freeport.T(t)
	e.SetConfig(uplinktest.Config(t, wordSpec, "words", 1, port))
	startConnector(t, e, func(o *pod.Options) {
		o.Namespace, o.SharedMemoryDir = namespace, dir
		o.SharedMemoryCheck = 20 * time.Millisecond // fault tests run fast; not asserted
	})
	return e, port
}

// lastStore is what the last heartbeat says of the store.
func lastStore(e *uplinktest.Engine) *enginev1.SharedMemory {
	hbs := e.Heartbeats()
	if len(hbs) == 0 {
		return nil
	}
	return hbs[len(hbs)-1].GetSharedMemory()
}

// Two pods of two namespaces on one Redis, each building the store from its Secret's files
// (URL and password): the same variable holds two values, under parley:<namespace>:..., and
// neither pod sees the other's.
func TestSharedMemoryFromTheSecretIsNamespaced(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Password: "pa55"})
	dir := secretDir(t, srv, "pa55\n")
	_, red := sharedPod(t, "red", dir)
	eBlue, blue := sharedPod(t, "blue", dir)

	if got := dial(t, red).ask("SET apple"); got != "+OK apple\r\n" {
		t.Fatalf("red: %q", got)
	}
	if got := dial(t, blue).ask("SET berry"); got != "+OK berry\r\n" {
		t.Fatalf("blue: %q", got)
	}
	if got := dial(t, red).ask("GET"); got != "+apple\r\n" {
		t.Errorf("red reads %q", got)
	}
	if got := dial(t, blue).ask("GET"); got != "+berry\r\n" {
		t.Errorf("blue reads %q", got)
	}
	for ns, want := range map[string]string{"red": "apple", "blue": "berry"} {
		if got := strings.TrimSpace(srv.CLI("GET", "parley:"+ns+":default:word")); got != want {
			t.Errorf("redis-cli GET parley:%s:default:word: %q, want %q", ns, got, want)
		}
	}
	uplinktest.Eventually(t, "a heartbeat saying the store is ready", func() bool {
		s := lastStore(eBlue)
		return s.GetState() == enginev1.SharedMemory_READY && s.GetStore() == "redis://"+srv.Addr()+"/0"
	})
}

// The store going down does not stop the pod: heartbeats say it is lost and why, the
// metric counts the failures, and they say it is ready again once it is back.
func TestSharedMemoryHealthInHeartbeats(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Password: "pa55"})
	metricsPort := freeport.T(t)
	e := uplinktest.New(t)
	e.SetToken(engineToken)
	port := freeport.T(t)
	e.SetConfig(uplinktest.Config(t, wordSpec, "words", 1, port))
	startConnector(t, e, func(o *pod.Options) {
		o.SharedMemoryDir = secretDir(t, srv, "pa55")
		o.SharedMemoryCheck = 20 * time.Millisecond
		o.MetricsAddress = "127.0.0.1:" + strconv.Itoa(metricsPort)
	})
	uplinktest.Eventually(t, "ready", func() bool { return lastStore(e).GetState() == enginev1.SharedMemory_READY })

	srv.Stop()
	uplinktest.Eventually(t, "lost, with the reason", func() bool {
		s := lastStore(e)
		return s.GetState() == enginev1.SharedMemory_LOST && strings.Contains(s.GetLastError(), "cannot reach the server") && s.GetErrors() > 0
	})
	// The conversation goes on: the shared step is an Error activity, the default answers.
	if got := dial(t, port).ask("GET"); got != "-ERR\r\n" {
		t.Errorf("reply with the store down: %q", got)
	}
	if m := scrape(t, metricsPort); strings.Contains(m, "parley_connector_shared_memory_errors_total 0\n") ||
		!strings.Contains(m, "parley_connector_shared_memory_errors_total ") {
		t.Errorf("no shared-memory errors counted:\n%s", m)
	}

	srv.Restart()
	uplinktest.Eventually(t, "ready again, the last error kept", func() bool {
		s := lastStore(e)
		return s.GetState() == enginev1.SharedMemory_READY && s.GetLastError() != ""
	})
}

// A wrong password is said in the heartbeat; the pod keeps running.
func TestSharedMemoryWrongPassword(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Password: "pa55"})
	e, _ := sharedPod(t, "ns", secretDir(t, srv, "wrong"))
	uplinktest.Eventually(t, "lost: authentication failed", func() bool {
		s := lastStore(e)
		return s.GetState() == enginev1.SharedMemory_LOST && strings.Contains(s.GetLastError(), "authentication failed")
	})
}

// The store's password rotated under a running pod: once the server wants the new one, new
// connections fail, said as an authentication failure; once the kubelet updates the mounted
// Secret (a symlink swap, as volumetest does), reconnections use the new password, and
// shared steps work again in the same process.
func TestSharedMemoryPasswordRotatedWithoutARestart(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Password: "first-pa55"})
	secret := volumetest.New(t)
	data := map[string]string{
		v1alpha1.SharedMemoryURLKey:      "redis://" + srv.Addr() + "/0",
		v1alpha1.SharedMemoryPasswordKey: "first-pa55\n",
	}
	secret.Write(data)
	e, port := sharedPod(t, "ns", secret.Dir)
	if got := dial(t, port).ask("SET apple"); got != "+OK apple\r\n" {
		t.Fatalf("before the rotation: %q", got)
	}

	// The server's password changes; the pod's connections are cut, so that it reconnects.
	srv.SetPassword("second-pa55")
	srv.CLI("CLIENT", "KILL", "TYPE", "normal")
	uplinktest.Eventually(t, "lost: authentication failed", func() bool {
		s := lastStore(e)
		return s.GetState() == enginev1.SharedMemory_LOST && strings.Contains(s.GetLastError(), "authentication failed")
	})
	if got := dial(t, port).ask("SET berry"); got != "-ERR\r\n" {
		t.Errorf("a shared step with the old password: %q, want the default reply", got)
	}

	data[v1alpha1.SharedMemoryPasswordKey] = "second-pa55\n"
	secret.Write(data)
	uplinktest.Eventually(t, "ready again with the new password", func() bool {
		return lastStore(e).GetState() == enginev1.SharedMemory_READY
	})
	if got := dial(t, port).ask("SET cherry"); got != "+OK cherry\r\n" {
		t.Fatalf("after the rotation: %q", got)
	}
	if got := strings.TrimSpace(srv.CLI("GET", "parley:ns:default:word")); got != "cherry" {
		t.Errorf("redis-cli GET parley:ns:default:word: %q, want cherry", got)
	}
	for _, h := range e.Hellos() {
		if h.GetRun() != e.Hellos()[0].GetRun() {
			t.Errorf("the pod process restarted: run %q, then %q", e.Hellos()[0].GetRun(), h.GetRun())
		}
	}
}

// tlsSharedPod runs a pod whose mounted engine Secret (written as the kubelet writes it)
// names srv, a TLS store, with its CA; data is the Secret's content, to change and write
// again.
func tlsSharedPod(t *testing.T, srv *redistest.Server) (e *uplinktest.Engine, port int, secret *volumetest.Volume, data map[string]string) {
	t.Helper()
	secret = volumetest.New(t)
	data = map[string]string{
		v1alpha1.SharedMemoryURLKey: srv.URL(),
		v1alpha1.SharedMemoryCAKey:  string(srv.CAPEM),
	}
	secret.Write(data)
	e, port = sharedPod(t, "ns", secret.Dir)
	if got := dial(t, port).ask("SET apple"); got != "+OK apple\r\n" {
		t.Fatalf("with the first CA: %q", got)
	}
	return e, port, secret, data
}

// sameRun fails the test when the pod process restarted.
func sameRun(t *testing.T, e *uplinktest.Engine) {
	t.Helper()
	for _, h := range e.Hellos() {
		if h.GetRun() != e.Hellos()[0].GetRun() {
			t.Errorf("the pod process restarted: run %q, then %q", e.Hellos()[0].GetRun(), h.GetRun())
		}
	}
}

// The store's CA rotated under a running pod: once the server's certificate comes from a
// new CA, new connections fail, said as a certificate not trusted; once the kubelet updates
// the mounted Secret's CA, reconnections verify the server against the new CA, and shared
// steps work again in the same process.
func TestSharedMemoryCARotatedWithoutARestart(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{TLS: true})
	e, port, secret, data := tlsSharedPod(t, srv)

	srv.RotateCA()
	srv.CLI("CLIENT", "KILL", "TYPE", "normal")
	uplinktest.Eventually(t, "lost: the certificate is not trusted", func() bool {
		s := lastStore(e)
		return s.GetState() == enginev1.SharedMemory_LOST && strings.Contains(s.GetLastError(), "the server's TLS certificate is not trusted")
	})
	if got := dial(t, port).ask("SET berry"); got != "-ERR\r\n" {
		t.Errorf("a shared step with the old CA: %q, want the default reply", got)
	}

	data[v1alpha1.SharedMemoryCAKey] = string(srv.CAPEM)
	secret.Write(data)
	uplinktest.Eventually(t, "ready again with the new CA", func() bool {
		return lastStore(e).GetState() == enginev1.SharedMemory_READY
	})
	if got := dial(t, port).ask("SET cherry"); got != "+OK cherry\r\n" {
		t.Fatalf("after the rotation: %q", got)
	}
	if got := strings.TrimSpace(srv.CLI("GET", "parley:ns:default:word")); got != "cherry" {
		t.Errorf("redis-cli GET parley:ns:default:word: %q, want cherry", got)
	}
	sameRun(t, e)
}

// A mounted CA that did not issue the server's certificate, or that holds no PEM
// certificate, fails the pod's new connections with what is wrong, and no shared step is
// made: the pod neither connects unverified nor keeps trusting the CA it read before.
func TestSharedMemoryUnusableCAFailsConnections(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{TLS: true})
	e, port, secret, data := tlsSharedPod(t, srv)
	for _, c := range []struct{ name, ca, want string }{
		{"a CA that did not issue the certificate", string(redistest.UnrelatedCA(t)), "the server's TLS certificate is not trusted"},
		{"no PEM certificate", "not a certificate\n", v1alpha1.SharedMemoryCAKey + " holds no PEM certificate"},
	} {
		data[v1alpha1.SharedMemoryCAKey] = c.ca
		secret.Write(data)
		srv.CLI("CLIENT", "KILL", "TYPE", "normal")
		uplinktest.Eventually(t, "lost with "+c.name, func() bool {
			s := lastStore(e)
			return s.GetState() == enginev1.SharedMemory_LOST && strings.Contains(s.GetLastError(), c.want)
		})
		if got := dial(t, port).ask("SET berry"); got != "-ERR\r\n" {
			t.Errorf("a shared step with %s: %q, want the default reply", c.name, got)
		}
		if got := strings.TrimSpace(srv.CLI("GET", "parley:ns:default:word")); got != "apple" {
			t.Errorf("with %s: redis-cli GET parley:ns:default:word: %q, want apple", c.name, got)
		}
	}
	sameRun(t, e)
}

// At start, a mounted CA that holds no PEM certificate stops the pod, saying so.
func TestSharedMemoryUnusableCAStopsThePodAtStart(t *testing.T) {
	secret := volumetest.New(t)
	secret.Write(map[string]string{
		v1alpha1.SharedMemoryURLKey: "rediss://127.0.0.1:" + strconv.Itoa(freeport.T(t)) + "/0",
		v1alpha1.SharedMemoryCAKey:  "not a certificate\n",
	})
	e := uplinktest.New(t)
	e.SetToken(engineToken)
	p := startConnector(t, e, func(o *pod.Options) { o.SharedMemoryDir = secret.Dir })
	if err := p.wait(t); err == nil || !strings.Contains(err.Error(), v1alpha1.SharedMemoryCAKey+" holds no PEM certificate") {
		t.Fatalf("the pod with an unusable CA: %v", err)
	}
}

// Without the store's keys in the Secret, the pod keeps shared variables itself and its
// heartbeats say nothing of a store.
func TestSharedMemoryInProcessWithoutAStore(t *testing.T) {
	e, port := sharedPod(t, "ns", t.TempDir())
	if got := dial(t, port).ask("SET kiwi"); got != "+OK kiwi\r\n" {
		t.Fatalf("reply %q", got)
	}
	uplinktest.Eventually(t, "a heartbeat", func() bool { return len(e.Heartbeats()) > 0 })
	if s := lastStore(e); s != nil {
		t.Errorf("heartbeat reports a store: %v", s)
	}
}
