package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/connectortest"
)

// kubectlPlugin starts a kube-apiserver with Parley's CRDs and returns an admin client, a
// kubeconfig file for it, and the binary installed as kubectl finds plugins.
func kubectlPlugin(t *testing.T) (client.Client, string, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real kube-apiserver and etcd (-short)")
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: this test needs a real kube-apiserver and etcd. " +
			"Run `make test`, or: export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)")
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	if _, err := env.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	plugin := filepath.Join(dir, pluginName)
	if err := os.Symlink(parleyBinary, plugin); err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(admin.Config(), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "decoys"}}); err != nil {
		t.Fatal(err)
	}
	return c, kubeconfigPath, plugin
}

func writeActivity(t *testing.T, c client.Client, connector string, seq int, typ v1alpha1.ActivityType, message string) {
	t.Helper()
	a := &v1alpha1.Activity{
		ObjectMeta: metav1.ObjectMeta{Namespace: "decoys", Name: connector + "-run-" + strings.Repeat("0", 5) + string(rune('0'+seq)),
			Labels: map[string]string{v1alpha1.LabelConnector: connector, v1alpha1.LabelConnection: "c-000001"}}, // as the engine labels them
		ActivityRecord: v1alpha1.ActivityRecord{Connector: connector, Type: typ, Message: message,
			Time:       metav1.NewMicroTime(time.Date(2026, 12, 6, 10, 0, seq, 0, time.UTC)),
			Connection: &v1alpha1.ConnectionRef{ID: "c-000001", Peer: "203.0.113.9:5000", Transport: v1alpha1.TransportTCP}},
	}
	if err := c.Create(context.Background(), a); err != nil {
		t.Fatal(err)
	}
}

// TestKubectlParley: the binary installed as kubectl-parley tails a connector's Activities
// (the latest first, then new ones as they are written) and checks rules with the cluster.
func TestKubectlParley(t *testing.T) {
	c, kubeconfig, plugin := kubectlPlugin(t)
	writeActivity(t, c, "decoy", 1, v1alpha1.ActivityConnected, "")
	writeActivity(t, c, "decoy", 2, v1alpha1.ActivityEnded, "first ended")
	writeActivity(t, c, "other", 3, v1alpha1.ActivityConnected, "not decoy's")

	t.Run("tail", func(t *testing.T) {
		cmd := exec.Command(plugin, "tail", "decoy", "-n", "decoys", "--kubeconfig", kubeconfig, "--tail", "1")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr connectortest.Output
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		lines := make(chan string, 16)
		go func() {
			s := bufio.NewScanner(stdout)
			for s.Scan() {
				lines <- s.Text()
			}
			close(lines)
		}()
		next := func() string {
			t.Helper()
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("output ended; stderr: %s", stderr.String())
				}
				return l
			case <-time.After(processWait):
				t.Fatalf("no line; stderr: %s", stderr.String())
			}
			return ""
		}
		if h := next(); !strings.HasPrefix(h, "TIME ") || strings.Contains(h, "CONNECTOR") {
			t.Errorf("header %q", h)
		}
		if l := next(); !strings.Contains(l, "Ended") || !strings.Contains(l, "first ended") {
			t.Errorf("the latest activity: %q", l)
		}
		writeActivity(t, c, "other", 4, v1alpha1.ActivityEnded, "not decoy's either")
		writeActivity(t, c, "decoy", 5, v1alpha1.ActivityConnected, "followed")
		if l := next(); !strings.Contains(l, "followed") {
			t.Errorf("followed activity: %q", l)
		}
	})

	t.Run("transcript", func(t *testing.T) {
		out, err := exec.Command(plugin, "transcript", "c-000001", "--connector", "decoy", "-n", "decoys", "--kubeconfig", kubeconfig).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Connector:  decoy") || !strings.Contains(string(out), "first ended") {
			t.Errorf("%v\n%s", err, out)
		}
	})

	t.Run("check with the cluster", func(t *testing.T) {
		dir := t.TempDir()
		good := filepath.Join(dir, "good.yaml")
		bad := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(good, []byte(validRules), 0o600); err != nil {
			t.Fatal(err)
		}
		// Compiles, but no API server takes the name.
		if err := os.WriteFile(bad, []byte(strings.Replace(validRules, "name: pinger}", "name: Not_A_DNS_Name}", 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(plugin, "check", good, "-n", "decoys", "--kubeconfig", kubeconfig).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "pinger: valid") {
			t.Errorf("good rules: %v\n%s", err, out)
		}
		var cr v1alpha1.ConversationRules
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: "decoys", Name: "pinger"}, &cr); !apierrors.IsNotFound(err) {
			t.Errorf("check created the rules (a dry run must not): %v", err)
		}
		out, err = exec.Command(plugin, "check", bad, "-n", "decoys", "--kubeconfig", kubeconfig).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "refused by the cluster") || !strings.Contains(string(out), "metadata.name") {
			t.Errorf("bad name: %v\n%s", err, out)
		}
		// As parley, check stays local unless asked.
		if out, err := exec.Command(parleyBinary, "check", bad).CombinedOutput(); err != nil {
			t.Errorf("parley check went to a cluster: %v\n%s", err, out)
		}
	})
}
