package sink_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/parley-dev/parley/api/v1alpha1"
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
