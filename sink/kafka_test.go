package sink_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/evidence"
	"github.com/parley-dev/parley/sink"
)

// No Kafka broker can run on this machine (it needs a JVM and more memory than the tests
// have): the cluster is franz-go's kfake, an in-process implementation of Kafka's wire
// protocol, and the topic is read back by kcat (librdkafka), a real client independent of
// the producer.
func TestKafkaReadBackByKcat(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed (Debian package kcat; CI installs it)")
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "parley-activities"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	dest, err := sink.NewKafka(brokers, "parley-activities", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := sink.New(dest, sink.Options{MaxBatch: 100})
	go s.Run()
	defer s.Close()
	s.Offer(items("redis-7f3a9c", 250)...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Drain(ctx, 250); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Delivered != 250 {
		t.Fatalf("stats %+v", st)
	}
	out, err := exec.CommandContext(ctx, kcat, "-C", "-b", strings.Join(brokers, ","), "-t", "parley-activities",
		"-o", "beginning", "-e", "-q", "-f", "%k\t%h\t%s\n").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != 250 {
		t.Fatalf("kcat read %d records, want 250:\n%s", len(lines), out)
	}
	for i, l := range lines {
		parts := strings.SplitN(l, "\t", 3)
		var a v1alpha1.ActivityRecord
		if len(parts) != 3 || parts[0] != "redis" || parts[1] != "key="+items("redis-7f3a9c", i+1)[i].Key ||
			json.Unmarshal([]byte(parts[2]), &a) != nil || a.Type != v1alpha1.ActivityInput {
			t.Fatalf("record %d: %q", i, l)
		}
	}
}

// Checkpoints travel in the topic beside the activities they cover, {"checkpoint": {...}}
// records with the header kind=checkpoint on the connector's partition: the topic as kcat
// reads it verifies with the evidence package (parley verify), signed to the last activity.
func TestKafkaCarriesCheckpoints(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed (Debian package kcat; CI installs it)")
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "parley-activities"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	dest, err := sink.NewKafka(brokers, "parley-activities", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := sink.New(dest, sink.Options{MaxBatch: 7})
	go s.Run()
	defer s.Close()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer := evidence.NewSigner(key, 10, time.Hour)
	chain := evidence.NewChain(nil)
	batch := items("redis-7f3a9c", 25)
	var cps []*evidence.Checkpoint
	for _, it := range batch {
		chain.Number(it.Record)
		chain.Seal(it.Record)
	}
	for i := 0; i < len(batch); i += 5 {
		part := batch[i : i+5]
		s.Offer(part...)
		recs := make([]*v1alpha1.ActivityRecord, len(part))
		for j := range part {
			recs[j] = part[j].Record
		}
		for _, cp := range signer.Observe(recs) {
			cps = append(cps, cp)
			s.Offer(sink.CheckpointItem("redis", cp))
		}
	}
	for _, cp := range signer.Due(true) {
		cps = append(cps, cp)
		s.Offer(sink.CheckpointItem("redis", cp))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Drain(ctx, uint64(25+len(cps))); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Delivered != 25 || st.Checkpoints != 3 || len(cps) != 3 {
		t.Fatalf("stats %+v, %d checkpoints signed; want 25 activities and 3 checkpoints", st, len(cps))
	}
	out, err := exec.CommandContext(ctx, kcat, "-C", "-b", strings.Join(brokers, ","), "-t", "parley-activities",
		"-o", "beginning", "-e", "-q", "-f", "%k\t%h\t%s\n").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat: %v: %s", err, out)
	}
	var values strings.Builder
	checkpoints := 0
	for _, l := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		parts := strings.SplitN(l, "\t", 3)
		if len(parts) != 3 || parts[0] != "redis" {
			t.Fatalf("record %q", l)
		}
		if strings.HasPrefix(parts[2], `{"checkpoint":`) {
			checkpoints++
			if want := "key=redis-checkpoint-" + chain.ID() + "-"; !strings.HasPrefix(parts[1], want) || !strings.HasSuffix(parts[1], ",kind=checkpoint") {
				t.Errorf("checkpoint headers %q", parts[1])
			}
		}
		values.WriteString(parts[2] + "\n")
	}
	r, err := evidence.Verify(strings.NewReader(values.String()), pub)
	if err != nil {
		t.Fatal(err)
	}
	if checkpoints != 3 || len(r.Problems) != 0 || len(r.Chains) != 1 || r.Chains[0].Records != 25 || r.Chains[0].Signed != 25 {
		t.Fatalf("%d checkpoints; report %+v", checkpoints, r)
	}
}
