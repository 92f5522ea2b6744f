package engine_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/sharedmemory/redistest"
)

// sharedMemoryWhen waits until the connector's SharedMemoryReady condition has status, and
// returns it.
func (f fixture) sharedMemoryWhen(t *testing.T, status metav1.ConditionStatus) metav1.Condition {
	t.Helper()
	var got metav1.Condition
	eventually(t, "SharedMemoryReady "+string(status), func() error {
		c := meta.FindStatusCondition(f.connector(t).Status.Conditions, v1alpha1.ConditionSharedMemoryReady)
		if c == nil || c.Status != status {
			return fmt.Errorf("condition %+v", c)
		}
		got = *c
		return nil
	})
	return got
}

// A connector process on a real redis-server: the engine sets SharedMemoryReady from its
// heartbeats, False with the last error and a Warning Event when the server stops, True
// and a Normal Event when it is back.
func TestSharedMemoryReadyFollowsTheStore(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Password: "pa55"})
	dir := t.TempDir()
	for k, v := range map[string]string{
		v1alpha1.SharedMemoryURLKey:      "redis://" + srv.Addr() + "/0",
		v1alpha1.SharedMemoryPasswordKey: "pa55",
	} {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f := newFixture(t, nil)
	// The pod's files: its engine Secret's keys, as the controller writes them.
	f.start(t, "--shared-memory-dir", dir, "--shared-memory-check", "50ms")

	c := f.sharedMemoryWhen(t, metav1.ConditionTrue)
	if c.Reason != v1alpha1.ReasonSharedMemoryReady || !strings.Contains(c.Message, "redis://"+srv.Addr()) || strings.Contains(c.Message, "pa55") {
		t.Errorf("ready: %+v", c)
	}

	srv.Stop()
	c = f.sharedMemoryWhen(t, metav1.ConditionFalse)
	if c.Reason != v1alpha1.ReasonSharedMemoryLost || !strings.Contains(c.Message, "cannot reach the server") {
		t.Errorf("lost: %+v", c)
	}
	if ev := f.waitEvent(t, v1alpha1.ReasonSharedMemoryLost); ev.Type != "Warning" || !strings.Contains(ev.Note, "cannot reach the server") {
		t.Errorf("loss event: %s %q", ev.Type, ev.Note)
	}

	srv.Restart()
	c = f.sharedMemoryWhen(t, metav1.ConditionTrue)
	if c.Reason != v1alpha1.ReasonSharedMemoryReady {
		t.Errorf("recovered: %+v", c)
	}
	if ev := f.waitEvent(t, v1alpha1.ReasonSharedMemoryRecovered); ev.Type != "Normal" {
		t.Errorf("recovery event: %s %q", ev.Type, ev.Note)
	}
	if n := len(f.events(t, v1alpha1.ReasonSharedMemoryLost)); n != 1 {
		t.Errorf("%d loss events, want 1", n)
	}
}
