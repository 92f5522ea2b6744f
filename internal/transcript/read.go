// Package transcript prints one conversation as a readable dialogue: what the peer sent and
// what Parley answered, step by step with timings, the rules that fired, captures, alerts and
// the end. Its activities come from a JSON activity log (`parley run -o json`) or from the
// Activity objects of a cluster.
package transcript

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/evidence"
)

// Entry is one activity and the run of the connector process that recorded it: each run
// numbers its conversations from c-000001, so a conversation is a connector, a run and an id.
type Entry struct {
	// Run is the process's run id on a cluster (the middle of the Activity's name), or the
	// ordinal of the connector's start in a log ("1", "2", ...: empty when it started once).
	Run    string
	Record *v1alpha1.ActivityRecord
}

// maxLine bounds one line of a log: an activity with a megabyte input and output, escaped.
const maxLine = 16 << 20

// ReadLog reads a JSON activity log, one activity per line as `parley run -o json` writes
// it. Lines that are not JSON objects (a summary a shell mixed in) are skipped; a malformed
// object is an error naming its line. A connector started again in the same log begins a
// new run.
func ReadLog(r io.Reader) ([]Entry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var entries []Entry
	runs := map[string]int{}          // connector → its current run, counted from 1
	lines := evidence.NewLineReader() // compact lines (docs/evidence.md) restored whole
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 || b[0] != '{' {
			continue
		}
		rec, _, err := lines.Restore(b)
		if err != nil {
			return nil, fmt.Errorf("line %d: not an activity: %v", line, err)
		}
		if runs[rec.Connector] == 0 || rec.Type == v1alpha1.ActivityConnectorStarted {
			runs[rec.Connector]++
		}
		entries = append(entries, Entry{Run: strconv.Itoa(runs[rec.Connector]), Record: rec})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the log: %w", err)
	}
	for i, e := range entries {
		if runs[e.Record.Connector] == 1 {
			entries[i].Run = ""
		}
	}
	return entries, nil
}

// FromActivities turns Activity objects into entries, each connector process's in the
// order it recorded them: the run and sequence number come from the object's name,
// <connector>-<run>-<seq>.
func FromActivities(items []v1alpha1.Activity) []Entry {
	type keyed struct {
		Entry
		seq uint64
	}
	all := make([]keyed, 0, len(items))
	for i := range items {
		a := &items[i]
		rec := a.ActivityRecord
		if rec.Connector == "" {
			rec.Connector = a.Labels[v1alpha1.LabelConnector]
		}
		run, seq := splitName(a.Name, rec.Connector)
		all = append(all, keyed{Entry{Run: run, Record: &rec}, seq})
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.Record.Connector != b.Record.Connector {
			return a.Record.Connector < b.Record.Connector
		}
		if a.Run != b.Run {
			return a.Run < b.Run
		}
		return a.seq < b.seq
	})
	out := make([]Entry, len(all))
	for i, k := range all {
		out[i] = k.Entry
	}
	return out
}

// splitName reads the run and sequence number of an Activity named <connector>-<run>-<seq>.
func splitName(name, connector string) (string, uint64) {
	rest, ok := strings.CutPrefix(name, connector+"-")
	if !ok {
		return "", 0
	}
	run, seq, ok := strings.Cut(rest, "-")
	if !ok {
		return "", 0
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return "", 0
	}
	return run, n
}

// FromCluster lists the Activities of namespace, of one connector when connector is set and
// of one connection id when id is set (their labels select them), as entries.
func FromCluster(ctx context.Context, c client.Reader, namespace, connector, id string) ([]Entry, error) {
	labels := client.MatchingLabels{}
	if connector != "" {
		labels[v1alpha1.LabelConnector] = connector
	}
	if id != "" {
		labels[v1alpha1.LabelConnection] = id
	}
	var list v1alpha1.ActivityList
	if err := c.List(ctx, &list, client.InNamespace(namespace), labels); err != nil {
		return nil, fmt.Errorf("listing Activities in namespace %s: %w", namespace, err)
	}
	return FromActivities(list.Items), nil
}
