package main

// `parley operator` runs as the real binary against a real kube-apiserver, for what the
// command adds to the manager (internal/operator, engine and controllers have their own
// tests): how it ends on SIGTERM, as when its pod is deleted or rolled.

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/parley-dev/parley/connector/connectortest"
	"github.com/parley-dev/parley/internal/envtestutil"
)

// TestOperatorStopsGracefullyOnSIGTERM: the leader's engine writes its last status counters
// and the Lease is released for the next replica at once. Killed by the signal instead, the
// engine's last interval of counters is lost (its connectors were told those activities are
// written, so nobody counts them again) and the next leader waits for the Lease to expire.
func TestOperatorStopsGracefullyOnSIGTERM(t *testing.T) {
	c, kubeconfig, _ := kubectlPlugin(t)
	out := &connectortest.Output{}
	cmd := exec.Command(parleyBinary, "operator", "--kubeconfig", kubeconfig,
		"--leader-elect", "--leader-election-namespace", "default", "--engine-namespace", "default", "--pod-name", "",
		"--engine-bind-address", "127.0.0.1:0", "--engine-address", "127.0.0.1:1",
		"--webhook-bind-address", "0", "--metrics-bind-address", "0", "--health-probe-bind-address", "0")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("operator output:\n%s", out.String())
		}
	})

	lease := types.NamespacedName{Namespace: "default", Name: "parley-operator.parley.io"}
	envtestutil.Eventually(t, 60*time.Second, "the operator to lead and its engine to listen", func() error {
		if holder := leaseHolder(c, lease); holder == "" {
			return errors.New("no holder of the Lease yet")
		}
		if !strings.Contains(out.String(), "engine listening") {
			return errors.New("the engine does not listen yet")
		}
		return nil
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("after SIGTERM the operator ended with %v, not exit code 0", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the operator did not end within 60s of SIGTERM")
	}
	if !strings.Contains(out.String(), "engine stopped; status written") {
		t.Error("the engine did not write its last status before the operator ended")
	}
	if holder := leaseHolder(c, lease); holder != "" {
		t.Errorf("the Lease is still held by %q: the next leader waits for it to expire", holder)
	}
}

// leaseHolder is the holder of the Lease key, "" when none holds it (released or absent).
func leaseHolder(c client.Client, key types.NamespacedName) string {
	var l coordinationv1.Lease
	if err := c.Get(context.Background(), key, &l); err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return fmt.Sprint(*l.Spec.HolderIdentity)
}
