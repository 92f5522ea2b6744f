//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// newNetns makes a network namespace the way a runtime would for a pod, and returns its path.
// It is the namespace of a thread parked until the test ends.
func newNetns(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: makes network namespaces, which needs root (-short)")
	}
	if os.Geteuid() != 0 {
		t.Skip("making a network namespace needs root")
	}
	paths, done := make(chan string), make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := syscall.Unshare(syscall.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			close(paths)
			return
		}
		paths <- fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), syscall.Gettid())
		<-done
	}()
	path, ok := <-paths
	if !ok {
		t.FailNow()
	}
	t.Cleanup(func() { close(done) })
	return path
}

// cni runs the plugin's command as a runtime would and returns its stdout.
func cni(t *testing.T, command, netns, conf string) (string, error) {
	t.Helper()
	t.Setenv("CNI_COMMAND", command)
	t.Setenv("CNI_CONTAINERID", "c1")
	t.Setenv("CNI_IFNAME", "eth0")
	t.Setenv("CNI_NETNS", netns)
	var out bytes.Buffer
	err := run(strings.NewReader(conf), &out)
	return out.String(), err
}

func TestCommands(t *testing.T) {
	netns := newNetns(t)
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "test", "type": "parley-loopback", "subnet": "127.1.0.0/16", "dataDir": %q}`, t.TempDir())

	out, err := cni(t, "ADD", netns, conf)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	var result struct {
		Interfaces []struct{ Name, Sandbox string }
		IPs        []struct {
			Address   string
			Interface int
		}
	}
	if err := json.Unmarshal([]byte(out), &result); err != nil {
		t.Fatalf("ADD result %s: %v", out, err)
	}
	if len(result.Interfaces) != 1 || result.Interfaces[0].Name != "eth0" || result.Interfaces[0].Sandbox != netns ||
		len(result.IPs) != 1 || result.IPs[0].Address != "127.1.0.1/32" || result.IPs[0].Interface != 0 {
		t.Fatalf("ADD result = %s", out)
	}
	// A retried ADD succeeds with the same address.
	if again, err := cni(t, "ADD", netns, conf); err != nil || again != out {
		t.Fatalf("ADD again = %s, %v; want %s", again, err, out)
	}
	if _, err := cni(t, "CHECK", netns, conf); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	// The host's own lo is left alone.
	if err := checkLoopback(netip.MustParsePrefix(result.IPs[0].Address).Addr()); err == nil {
		t.Fatal("the host's lo holds the pod's address")
	}
	if _, err := cni(t, "DEL", netns, conf); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if _, err := cni(t, "DEL", "", conf); err != nil {
		t.Fatalf("DEL again, without a namespace: %v", err)
	}
	if _, err := cni(t, "CHECK", netns, conf); err == nil {
		t.Fatal("CHECK after DEL succeeded")
	}
}

func TestVersionAndErrors(t *testing.T) {
	out, err := cni(t, "VERSION", "", "")
	if err != nil || !strings.Contains(out, `"supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]`) {
		t.Fatalf("VERSION = %s, %v", out, err)
	}
	_, err = cni(t, "ADD", "/nonexistent", `{"cniVersion": "2.0.0", "type": "parley-loopback"}`)
	if e, ok := err.(*cniError); !ok || e.Code != errIncompatibleVersion {
		t.Fatalf("ADD with cniVersion 2.0.0: %#v; want code %d", err, errIncompatibleVersion)
	}
	_, err = cni(t, "ADD", "/nonexistent", `{"cniVersion": "1.0.0", "type": "parley-loopback", "subnet": "10.0.0.0/8"}`)
	if e, ok := err.(*cniError); !ok || e.Code != errInvalidConfig {
		t.Fatalf("ADD with a routable subnet: %#v; want code %d", err, errInvalidConfig)
	}
}
