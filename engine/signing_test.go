package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/parley-dev/parley/engine"
	"github.com/parley-dev/parley/evidence"
)

// lockedBuffer is the operator's log, written by its goroutines, read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// activityLines are the lines of the engine's activity log (logger engine.activity).
func (l *lockedBuffer) activityLines() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"logger":"engine.activity"`) {
			out.WriteString(sc.Text() + "\n")
		}
	}
	return out.String()
}

// The engine signs checkpoints of the connector run's chain into its activity log, every
// CheckpointEvery activities and after the interval: parley verify checks that log with the
// public key, and a wrong key is named as such.
func TestEngineSignsCheckpointsIntoTheActivityLog(t *testing.T) {
	f := newFixture(t, nil)
	creds := secretFiles(t, f.ns, f.name)
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	log := &lockedBuffer{}
	e, err := startOperatorLogging(ctx, engine.Options{ActivityQPS: 500, ActivityBurst: 500, SignKey: key, CheckpointEvery: 3, CheckpointInterval: time.Second}, false, log)
	if err != nil {
		t.Fatal(err)
	}
	f.waitServing(t, startConnector(t, f.ns, f.name, e.Address(), creds))
	p := f.dial(t)
	p.expect("+OK ready\r\n")
	for range 4 {
		p.say("PING\r\n", "+PONG v1\r\n")
	}
	p.say("QUIT\r\n", "+OK bye\r\n")

	dir := t.TempDir()
	logFile, keyFile := filepath.Join(dir, "activities.jsonl"), filepath.Join(dir, "key.pub.pem")
	if err := os.WriteFile(keyFile, evidence.MarshalPublicKey(pub), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the whole chain signed", func() error {
		lines := log.activityLines()
		r, err := evidence.Verify(strings.NewReader(lines), pub)
		if err != nil {
			return err
		}
		if len(r.Chains) != 1 || len(r.Problems) != 0 || r.Chains[0].Records < 9 || r.Chains[0].Signed != r.Chains[0].Last {
			return fmt.Errorf("report %+v", r)
		}
		if n := strings.Count(lines, `"msg":"checkpoint"`); n < 3 {
			return fmt.Errorf("%d checkpoints", n)
		}
		return os.WriteFile(logFile, []byte(lines), 0o600)
	})
	out, err := exec.Command(parleyBin, "verify", "--key", keyFile, logFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "signed up to") {
		t.Errorf("parley verify: %v\n%s", err, out)
	}
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	if err := os.WriteFile(keyFile, evidence.MarshalPublicKey(other), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(parleyBin, "verify", "--key", keyFile, logFile).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "bad-signature") {
		t.Errorf("parley verify with another key: %v\n%s", err, out)
	}
}

// Without a key given, the engine makes one in its Secret, and every replica reads the same.
func TestSigningKeyIsMadeOnceInItsSecret(t *testing.T) {
	ctx := context.Background()
	name := "evidence-" + namespace(t)
	first, err := engine.SigningKey(ctx, k8s, k8s, engineNamespace, name)
	if err != nil {
		t.Fatal(err)
	}
	again, err := engine.SigningKey(ctx, k8s, k8s, engineNamespace, name)
	if err != nil || !first.Equal(again) {
		t.Fatalf("a second replica read another key (%v)", err)
	}
	var sec corev1.Secret
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: engineNamespace, Name: name}, &sec); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sec.Data[engine.SigningPubKeyKey], evidence.MarshalPublicKey(first.Public().(ed25519.PublicKey))) {
		t.Errorf("signing.pub is not the key's public key:\n%s", sec.Data[engine.SigningPubKeyKey])
	}
}
