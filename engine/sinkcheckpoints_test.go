package engine_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/engine"
	"github.com/parley-dev/parley/evidence"
	"github.com/parley-dev/parley/sink"
)

// The engine's signed checkpoints go where the activities go: a JSON webhook's bodies, as
// its receiver stores them, verify with parley verify, signed to the last activity (the
// last checkpoints signed while the connector is quiet); an edited body does not. The
// connector writes no Activity objects: the engine reads only the head of each activity
// and the sink sends its JSON as the connector sent it.
func TestEngineSignsCheckpointsIntoItsSinks(t *testing.T) {
	// No Activity objects: the activities go to the sink as the connector sent them.
	f := newFixture(t, func(ec *v1alpha1.ExternalConnector) { ec.Spec.Activities.Record = v1alpha1.RecordNone })
	creds := secretFiles(t, f.ns, f.name)
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	createSecret(t, f.ns, "hook", map[string]string{sink.KeyHMAC: "k"})
	recv := newHookReceiver(t, "k")
	createHookSink(t, f.ns, "siem", recv.srv.URL, nil, v1alpha1.SinkFilter{})
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	reg := prometheus.NewRegistry()
	e, err := startOperator(ctx, engine.Options{ActivityQPS: 500, ActivityBurst: 500, Registry: reg,
		SignKey: key, CheckpointEvery: 3, CheckpointInterval: time.Second}, false)
	if err != nil {
		t.Fatal(err)
	}
	waitBuilt(t, reg, f.ns, "siem")
	f.waitServing(t, startConnector(t, f.ns, f.name, e.Address(), creds))
	p := f.dial(t)
	p.expect("+OK ready\r\n")
	for range 4 {
		p.say("PING\r\n", "+PONG v1\r\n")
	}
	p.say("QUIT\r\n", "+OK bye\r\n")

	dir := t.TempDir()
	output, keyFile := filepath.Join(dir, "webhook.json"), filepath.Join(dir, "key.pub.pem")
	if err := os.WriteFile(keyFile, evidence.MarshalPublicKey(pub), 0o600); err != nil {
		t.Fatal(err)
	}
	var body string
	eventually(t, "the webhook's output signed to its last activity", func() error {
		body = string(recv.output())
		r, err := evidence.Verify(strings.NewReader(body), pub)
		if err != nil {
			return err
		}
		if len(r.Chains) != 1 || len(r.Problems) != 0 || r.Chains[0].Records < 9 || r.Chains[0].Signed != r.Chains[0].Last {
			return fmt.Errorf("report %+v", r)
		}
		return nil
	})
	if n := strings.Count(body, `"name":"`+f.name+`-checkpoint-`); n < 3 {
		t.Errorf("%d checkpoints keyed %s-checkpoint-…:\n%s", n, f.name, body)
	}
	if err := os.WriteFile(output, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(parleyBin, "verify", "--key", keyFile, output).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "signed up to") {
		t.Errorf("parley verify: %v\n%s", err, out)
	}
	edited := strings.Replace(body, `"text":"PING\r\n"`, `"text":"PONG\r\n"`, 1)
	if edited == body {
		t.Fatalf("no PING input in:\n%s", body)
	}
	if err := os.WriteFile(output, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(parleyBin, "verify", "--key", keyFile, output).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "altered") {
		t.Errorf("parley verify of an edited body: %v\n%s", err, out)
	}
	if st := getSink(t, f.ns, "siem").Status; st.Delivered > int64(len(recv.names())) {
		t.Errorf("status.delivered %d counts more than the %d activities", st.Delivered, len(recv.names()))
	}
}
