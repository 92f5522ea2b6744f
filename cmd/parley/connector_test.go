package main

// `parley connector` runs as the real binary against uplinktest.Engine, for what the command
// adds to the pod process (connector/pod, whose own tests cover the rest): its flags and
// environment, its exit code, and SIGTERM.

import (
	"errors"
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
	"github.com/parley-dev/parley/connector/uplink/uplinktest"
	"github.com/parley-dev/parley/internal/freeport"
)

const engineToken = "t0ken"

// connectorProc is a running `parley connector`.
type connectorProc struct {
	cmd    *exec.Cmd
	out    *connectortest.Output
	exited chan struct{}
	err    error
}

// startConnector runs the binary against e; env is added to its environment.
func startConnector(t *testing.T, e *uplinktest.Engine, env []string, args ...string) *connectorProc {
	t.Helper()
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(token, []byte(engineToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, e.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	all := append([]string{"connector",
		"--engine-server-name", uplinktest.ServerName,
		"--engine-token-file", token, "--engine-ca-file", ca,
		"--tls-dir", filepath.Join(dir, "none"), "--tls-client-ca-dir", filepath.Join(dir, "none"),
		"--metrics-bind-address", "0", "--end-timeout", "15s",
	}, args...)
	p := &connectorProc{cmd: exec.Command(parleyBinary, all...), out: &connectortest.Output{}, exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("parley connector output:\n%s", p.out)
		}
	})
	return p
}

// wait returns the exit code.
func (p *connectorProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(uplinktest.Wait):
		t.Fatal("parley connector did not exit")
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return exit.ExitCode()
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return 0
}

func TestConnectorExitsWithoutConfig(t *testing.T) {
	e := uplinktest.New(t)
	e.SetToken(engineToken)
	began := time.Now()
	p := startConnector(t, e, nil, "--engine-address", e.Addr(), "--connector", "decoy", "--namespace", "ns", "--pod", "decoy-0",
		"--config-timeout", "1s")
	if code := p.wait(t); code == 0 {
		t.Fatal("exit code 0 without a Config")
	}
	if d := time.Since(began); d < time.Second {
		t.Errorf("exited after %v, before --config-timeout", d)
	}
	if out := p.out.String(); !strings.Contains(out, "no usable Config from the engine at "+e.Addr()+" within 1s") {
		t.Errorf("output lacks the reason:\n%s", out)
	}
}

// The flags reach the engine in Hello. A test of its own, which waits for the Hello: with a
// short --config-timeout, a process started on a loaded machine may give up before its first
// dial is through.
func TestConnectorTakesItsSettingsFromFlags(t *testing.T) {
	e := uplinktest.New(t)
	e.SetToken(engineToken)
	startConnector(t, e, nil, "--engine-address", e.Addr(), "--connector", "decoy", "--namespace", "ns", "--pod", "decoy-0")
	uplinktest.Eventually(t, "a Hello", func() bool { return len(e.Hellos()) > 0 })
	if h := e.Hellos()[0]; h.GetConnector() != "decoy" || h.GetNamespace() != "ns" || h.GetPod() != "decoy-0" || h.GetToken() != engineToken ||
		len(h.GetRun()) != 8 || h.GetRulesHash() != "" || h.GetVersion() == "" {
		t.Errorf("hello %v", h)
	}
}

func TestConnectorTakesItsSettingsFromTheEnvironmentAndEndsOnSIGTERM(t *testing.T) {
	e := uplinktest.New(t)
	e.SetToken(engineToken)
	port := freeport.T(t)
	e.SetConfig(uplinktest.Config(t, `
operation: {port: 7000}
conversation: {greetings: {value: "+OK ready\r\n"}}
`, "pinger", 1, port))
	p := startConnector(t, e, []string{
		v1alpha1.EnvEngineAddress + "=" + e.Addr(), v1alpha1.EnvConnector + "=decoy",
		v1alpha1.EnvNamespace + "=ns", v1alpha1.EnvPodName + "=decoy-7",
	})
	uplinktest.Eventually(t, "the connector to serve", func() bool {
		c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if out := p.out.String(); !strings.Contains(out, "signal again to quit at once") {
		t.Errorf("output lacks the signal:\n%s", out)
	}
	byes := e.Byes()
	if len(byes) != 1 || !strings.Contains(byes[0].GetReason(), "signal") {
		t.Fatalf("byes %v, want one saying the pod got a signal", byes)
	}
	if hs := e.Hellos(); len(hs) == 0 || hs[0].GetConnector() != "decoy" || hs[0].GetNamespace() != "ns" || hs[0].GetPod() != "decoy-7" {
		t.Errorf("hellos %v", hs)
	}
}
