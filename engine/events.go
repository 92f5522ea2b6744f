package engine

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/text"
)

// event records an Event about a connector. events.k8s.io folds repeated events of the same
// reason into one series, so a stream of alerts costs the API server one object per reason.
func (e *Engine) event(ec *v1alpha1.ExternalConnector, eventType, reason, action, note string) {
	e.recorder.Eventf(ec, nil, eventType, reason, action, "%s", text.EventNote(note))
}

// alert announces an activity flagged by an alert rule (or alertAll) as a Warning Event.
func (e *Engine) alert(ec *v1alpha1.ExternalConnector, pod string, rec *v1alpha1.ActivityRecord) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", rec.Type)
	if c := rec.Connection; c != nil {
		fmt.Fprintf(&b, " from %s (%s)", c.Peer, c.ID)
	}
	if r := rec.Rules; r != nil && (len(r.Executed) > 0 || len(r.Async) > 0) {
		fmt.Fprintf(&b, ", rules %v", append(append([]int32{}, r.Executed...), r.Async...))
	}
	if in := rec.Input; in != nil {
		fmt.Fprintf(&b, ", input \"%s\"", preview(in.Text))
	}
	if rec.Message != "" {
		fmt.Fprintf(&b, ": %s", rec.Message)
	}
	fmt.Fprintf(&b, " (pod %s)", pod)
	e.event(ec, corev1.EventTypeWarning, v1alpha1.ReasonRuleAlert, "Alert", b.String())
}

// lifecycle announces a connector process starting and stopping.
func (e *Engine) lifecycle(ec *v1alpha1.ExternalConnector, pod string, rec *v1alpha1.ActivityRecord) {
	switch rec.Type {
	case v1alpha1.ActivityConnectorStarted:
		note := fmt.Sprintf("pod %s started", pod)
		if r := rec.RulesRef; r != nil {
			note += fmt.Sprintf(" with ConversationRules %s generation %d", r.Name, r.Generation)
		}
		if rec.Message != "" {
			note += ": " + rec.Message
		}
		e.event(ec, corev1.EventTypeNormal, v1alpha1.ReasonStarted, "Start", note)
	case v1alpha1.ActivityConnectorStopped:
		note := fmt.Sprintf("pod %s stopped", pod)
		if rec.Message != "" {
			note += ": " + rec.Message
		}
		e.event(ec, corev1.EventTypeNormal, v1alpha1.ReasonStopped, "Stop", note)
	}
}
