package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/internal/freeport"
	"github.com/parley-dev/parley/internal/kerneludp"
)

// waitAllThreadsStopped waits until every thread of process pid is stopped (state T): a
// SIGSTOP is delivered when kill returns, but the threads stop as the kernel schedules them.
func waitAllThreadsStopped(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(processWait); ; time.Sleep(10 * time.Millisecond) {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		if err != nil || len(tasks) == 0 {
			t.Fatalf("threads of %d: %v", pid, err)
		}
		stopped := 0
		for _, task := range tasks {
			stat, err := os.ReadFile(task)
			if err != nil {
				t.Fatal(err)
			}
			// pid (comm) state ...: comm may hold spaces and parentheses; the state follows the last ')'.
			if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && strings.HasPrefix(string(stat[i:]), ") T") {
				stopped++
			}
		}
		if stopped == len(tasks) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d threads of %d stopped", stopped, len(tasks), pid)
		}
	}
}

// The datagrams the kernel drops from a `parley run` UDP server's full receive buffer reach
// its metrics and its exit summary, counted as the kernel counts them. The process is
// stopped (SIGSTOP) so that it reads nothing while a burst far larger than its buffer is
// sent: it asks for 4 MiB, which the kernel caps at net.core.rmem_max and counts double.
func TestRunCountsTheKernelsUDPDrops(t *testing.T) {
	port := freeport.T(t)
	rules := writeFile(t, `apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata: {name: flooded}
spec:
  operation: {ip: 127.0.0.1, port: `+strconv.Itoa(port)+`, transport: UDP}
  conversation:
    rules: [{id: 1, mode: Sync, regex: "PING", response: "P"}]
`)
	var stderr connectortest.Output
	cmd := exec.Command(parleyBinary, "run", rules, "-o", "none", "--metrics-bind-address", "127.0.0.1:0")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer cmd.Process.Kill()
	connectortest.PingUDPFrom(t, "127.0.0.1", port) // the server reads
	// The metrics line was written before the connector served, but the copy of the
	// process's stderr into the test's may lag behind the ping's reply.
	url := metricsURL(t, &stderr)

	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitAllThreadsStopped(t, pid)
	out, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 60000) // about 64 KiB each as the kernel counts: 400 are 25 MiB
	for range 400 {
		if _, err := out.Write(payload); err != nil {
			t.Fatal(err)
		}
	}
	out.Close()
	dropped, err := kerneludp.SettledDrops(port, processWait)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	const metric = "parley_connector_udp_socket_dropped_total "
	want := metric + strconv.FormatUint(dropped, 10)
	var got string
	for deadline := time.Now().Add(processWait); got != want; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("metrics say %q, want %q", got, want)
		}
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, metric) {
				got = line
			}
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, stderr.String())
	}
	want = fmt.Sprintf(", %s dropped by the kernel (receive buffer full)", plural(int(dropped), "datagram"))
	var summary string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if s, ok := strings.CutPrefix(line, "parley: flooded: "); ok {
			summary = s
		}
	}
	if !strings.HasSuffix(summary, want) {
		t.Errorf("the exit summary %q does not end with %q:\n%s", summary, want, stderr.String())
	}
	t.Logf("%d datagrams dropped; the summary: %s", dropped, summary)
}
