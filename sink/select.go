package sink

import (
	"fmt"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/evidence"
)

func selector(s *metav1.LabelSelector) (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(s)
}

// Selects says whether the sink takes the activities of a connector with these labels:
// an unset or empty connectorSelector takes every connector.
func Selects(spec *v1alpha1.ActivitySinkSpec, connectorLabels map[string]string) bool {
	if spec.ConnectorSelector == nil {
		return true
	}
	sel, err := selector(spec.ConnectorSelector)
	if err != nil {
		return false // Validate refuses it: such a sink takes nothing
	}
	return sel.Matches(labels.Set(connectorLabels))
}

// Keeps says whether the sink's filter keeps a.
func Keeps(f *v1alpha1.SinkFilter, a *v1alpha1.ActivityRecord) bool {
	if f.AlertsOnly && !a.Alert {
		return false
	}
	if len(f.Types) == 0 {
		return true
	}
	for _, t := range f.Types {
		if t == a.Type {
			return true
		}
	}
	return false
}

// Start builds the sink spec describes, with its Secrets' values through secret, starts it
// (its Run on a goroutine of its own) and returns it with what picks its activities: the
// engine's deliveries and `parley run`'s routes are both made here. The spec must be valid
// (Validate).
func Start(spec *v1alpha1.ActivitySinkSpec, secret SecretValue, o Options) (*Route, error) {
	sel := labels.Everything()
	if s := spec.ConnectorSelector; s != nil {
		var err error
		if sel, err = selector(s); err != nil {
			return nil, fmt.Errorf("connectorSelector: %w", err)
		}
	}
	dest, err := NewDestination(spec, secret)
	if err != nil {
		return nil, err
	}
	s := New(dest, OptionsFor(spec, o))
	go s.Run()
	return &Route{Filter: FilterOf(spec), Selector: sel, Sink: s, Checkpoints: TakesCheckpoints(spec)}, nil
}

// Route is one sink and the activities it takes: one of `parley run`'s (Name, Offered), or
// the engine's delivery to an ActivitySink.
type Route struct {
	Name     string
	Filter   v1alpha1.SinkFilter
	Selector labels.Selector
	Sink     *Sink
	// Checkpoints: the sink takes the signed checkpoints (TakesCheckpoints).
	Checkpoints bool
	// Offered counts what the route offered its sink, for Drain. Atomic: a stop that gave
	// up waiting for the register reads it while the register may still be offering.
	Offered atomic.Uint64
}

// Feed hands each activity to the routes whose selector picks its connector (by the labels
// of its rules document) and whose filter keeps it, keyed by Key. It is an activity sink
// of the connector's register (Write is called on one goroutine) and never blocks it.
type Feed struct {
	Routes []*Route
	// Labels are each connector's labels, by name.
	Labels map[string]map[string]string
}

// Write offers a batch to the routes.
func (f *Feed) Write(batch []*v1alpha1.ActivityRecord) error {
	for _, r := range f.Routes {
		items := make([]Item, 0, len(batch))
		for _, a := range batch {
			if r.Selector.Matches(labels.Set(f.Labels[a.Connector])) && Keeps(&r.Filter, a) {
				items = append(items, Item{Key: Key(a), Record: a})
			}
		}
		r.Offered.Add(uint64(len(items)))
		r.Sink.Offer(items...)
	}
	return nil
}

// WriteCheckpoints offers signed checkpoints to the routes that take them, after the
// activities they cover (Write and WriteCheckpoints are called in order, on one
// goroutine at a time). The chain of `parley run` spans its connectors: every route
// that takes checkpoints gets each one, keyed with the connector "parley".
func (f *Feed) WriteCheckpoints(cps []*evidence.Checkpoint) error {
	if len(cps) == 0 {
		return nil
	}
	for _, r := range f.Routes {
		if !r.Checkpoints {
			continue
		}
		items := make([]Item, len(cps))
		for i, cp := range cps {
			items[i] = CheckpointItem("parley", cp)
		}
		r.Offered.Add(uint64(len(items)))
		r.Sink.Offer(items...)
	}
	return nil
}
