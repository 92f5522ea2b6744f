package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/parley-dev/parley/internal/rulesfile"
	"github.com/parley-dev/parley/sink"
)

// sinkErrors are the reasons an ActivitySink document cannot work, one line each with the
// document and the field path, as `parley check` prints them.
func sinkErrors(d *rulesfile.SinkDocument) []string {
	var out []string
	for _, e := range sink.Validate(&d.Sink.Spec, field.NewPath("spec")) {
		out = append(out, fmt.Sprintf("%s: ActivitySink %s: %s", d.Source, d.Sink.Name, e.Error()))
	}
	return out
}

// startSinks builds and starts the sinks of the ActivitySink documents with the Secrets of
// the files (same namespace, as in the cluster), feeding the rules documents' activities by
// their labels. Any sink that cannot be built fails the run before it serves.
func startSinks(docs []rulesfile.SinkDocument, secretDocs []rulesfile.SecretDocument, connectorLabels map[string]map[string]string, o sink.Options) (*sink.Feed, error) {
	feed := &sink.Feed{Labels: connectorLabels}
	var problems []string
	for i := range docs {
		d := &docs[i]
		if errs := sinkErrors(d); len(errs) > 0 {
			problems = append(problems, errs...)
			continue
		}
		secrets := map[string]map[string][]byte{}
		for _, s := range secretDocs {
			if s.Secret.Namespace == d.Sink.Namespace {
				secrets[s.Secret.Name] = s.Secret.Data
			}
		}
		r, err := sink.Start(&d.Sink.Spec, sink.SecretsIn(secrets), o)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: ActivitySink %s: %v (give the Secret as a kind: Secret document of the files)", d.Source, d.Sink.Name, err))
			continue
		}
		r.Name = d.Sink.Name
		feed.Routes = append(feed.Routes, r)
	}
	if len(problems) > 0 {
		stopSinks(context.Background(), io.Discard, feed)
		return nil, fmt.Errorf("%d ActivitySink problem(s):\n%s", len(problems), strings.Join(problems, "\n"))
	}
	return feed, nil
}

// stopSinks delivers what the sinks hold, for as long as ctx allows, closes them and says
// what each did. The sinks drain side by side: one receiver that never answers must not
// spend the time of the others (an email sink sends its digest only once drained).
func stopSinks(ctx context.Context, stderr io.Writer, feed *sink.Feed) {
	lines := make([]string, len(feed.Routes))
	var wg sync.WaitGroup
	for i, r := range feed.Routes {
		wg.Go(func() { lines[i] = stopSink(ctx, r) })
	}
	wg.Wait()
	for _, line := range lines {
		fmt.Fprintln(stderr, line)
	}
}

// stopSink drains and closes one route's sink and returns its line.
func stopSink(ctx context.Context, r *sink.Route) string {
	offered := r.Offered.Load()
	err := r.Sink.Drain(ctx, offered)
	_ = r.Sink.Close()
	st := r.Sink.Stats()
	line := fmt.Sprintf("parley: sink %s: %d delivered, %d dropped, %d failed attempts", r.Name, st.Delivered, st.Dropped, st.Failed)
	if st.Checkpoints > 0 {
		line += fmt.Sprintf(", %d checkpoints", st.Checkpoints)
	}
	if st.LastError != "" {
		line += " (last error: " + st.LastError + ")"
	}
	if err != nil {
		// Offered again: a register that gave up waiting may still have offered more.
		var left uint64
		if offered, settled := r.Offered.Load(), st.Delivered+st.Checkpoints+st.Dropped; offered > settled {
			left = offered - settled
		}
		line += fmt.Sprintf("; %d not delivered in time", left)
	}
	return line
}

// sinkDrainTime bounds how long `parley run` waits at the end for its sinks.
const sinkDrainTime = 10 * time.Second
