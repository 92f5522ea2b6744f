package sink_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/sink"
)

// benchSink offers b.N activities in chunks (as the engine's batches come) and waits until
// all are delivered: activities per second through one sink to its receiver.
func benchSink(b *testing.B, dest sink.Destination, raw bool) {
	s := sink.New(dest, sink.Options{QueueLength: 1 << 16, MaxBatch: 500})
	go s.Run()
	defer s.Close()
	all := items("redis-7f3a9c", 4096)
	if raw {
		// As the engine offers an activity it does not write: the connector's JSON and the
		// head of the record.
		for i := range all {
			r, err := json.Marshal(all[i].Record)
			if err != nil {
				b.Fatal(err)
			}
			a := all[i].Record
			all[i].Raw, all[i].Partial = r, true
			all[i].Record = &v1alpha1.ActivityRecord{Connector: a.Connector, Time: a.Time, Type: a.Type, Alert: a.Alert}
		}
	}
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		n := min(len(all), b.N-sent)
		for s.Stats().Queued > 1<<15 { // stay within the queue: measure delivery, not drops
			time.Sleep(time.Millisecond)
		}
		s.Offer(all[:n]...)
		sent += n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := s.Drain(ctx, uint64(b.N)); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if st := s.Stats(); st.Dropped != 0 {
		b.Fatalf("dropped %d", st.Dropped)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "activities/s")
}

func BenchmarkWebhookJSON(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	defer srv.Close()
	for _, raw := range []bool{false, true} {
		b.Run(map[bool]string{false: "encoded", true: "raw"}[raw], func(b *testing.B) {
			benchSink(b, sink.NewWebhook(srv.URL, v1alpha1.WebhookJSON, []byte("k"), nil), raw)
		})
	}
}

func BenchmarkKafka(b *testing.B) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "parley-activities"))
	if err != nil {
		b.Fatal(err)
	}
	defer cluster.Close()
	for _, raw := range []bool{false, true} {
		b.Run(map[bool]string{false: "encoded", true: "raw"}[raw], func(b *testing.B) {
			dest, err := sink.NewKafka(cluster.ListenAddrs(), "parley-activities", nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			benchSink(b, dest, raw)
		})
	}
}
