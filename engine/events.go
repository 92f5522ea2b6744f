package engine

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/text"
)

// event records an Event about a connector. events.k8s.io folds repeated events of the same
// reason into one series, so a stream of alerts costs the API server one object per reason.
func (e *Engine) event(ec *v1alpha1.ExternalConnector, eventType, reason, action, note string) {
	e.recorder.Eventf(ec, nil, eventType, reason, action, "%s", text.EventNote(note))
}

// alert announces an activity flagged by an alert rule (or alertAll) as a Warning Event of
// its own: the Event is related to the alert's Activity (named activity, whether or not the
// record policy keeps it), so the recorder does not fold different alerts into one series.
// At most opts.AlertEvents a minute per connector; the others are counted and summed up by
// suppressedAlerts.
func (e *Engine) alert(cs *connectorState, ec *v1alpha1.ExternalConnector, pod, activity string, rec *v1alpha1.ActivityRecord) {
	cs.mu.Lock()
	if cs.alertEvents == nil {
		cs.alertEvents = rate.NewLimiter(rate.Limit(float64(e.opts.AlertEvents)/60), e.opts.AlertEvents)
	}
	allowed := cs.alertEvents.Allow()
	if !allowed {
		cs.suppressedAlerts++
	}
	cs.mu.Unlock()
	if !allowed {
		return
	}
	related := &v1alpha1.Activity{ObjectMeta: metav1.ObjectMeta{Namespace: ec.Namespace, Name: activity}}
	e.recorder.Eventf(ec, related, corev1.EventTypeWarning, v1alpha1.ReasonRuleAlert, "Alert", "%s",
		text.EventNote(alertNote(rec, pod, ec.Spec.Activities.Redacts())))
}

// alertNote says what an alert was: its type, connection, rules and input (captured values
// masked when redact), message and pod.
func alertNote(rec *v1alpha1.ActivityRecord, pod string, redact bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", rec.Type)
	if c := rec.Connection; c != nil {
		fmt.Fprintf(&b, " from %s (%s)", c.Peer, c.ID)
	}
	if r := rec.Rules; r != nil && (len(r.Executed) > 0 || len(r.Async) > 0) {
		fmt.Fprintf(&b, ", rules %v", append(append([]int32{}, r.Executed...), r.Async...))
	}
	if in := rec.Input; in != nil {
		input := in.Text
		if redact {
			input = redactCaptures(input, rec.Captures)
		}
		fmt.Fprintf(&b, ", input \"%s\"", preview(input))
	}
	if rec.Message != "" {
		fmt.Fprintf(&b, ": %s", rec.Message)
	}
	fmt.Fprintf(&b, " (pod %s)", pod)
	return b.String()
}

// redactMask replaces a captured value in an Event.
const redactMask = "***"

// redactCaptures masks every occurrence of every captured value in input, longest first so
// that a value inside another is masked with it.
func redactCaptures(input string, captures []v1alpha1.CaptureRecord) string {
	values := make([]string, 0, len(captures))
	for _, c := range captures {
		if c.Value != "" {
			values = append(values, c.Value)
		}
	}
	sort.Slice(values, func(i, j int) bool { return len(values[i]) > len(values[j]) })
	for _, v := range values {
		input = strings.ReplaceAll(input, v, redactMask)
	}
	return input
}

// suppressedAlerts sums up, in one Warning Event a minute at most, the alerts of a connector
// that the cap kept from becoming Events of their own.
func (e *Engine) suppressedAlerts(ctx context.Context, cs *connectorState) {
	cs.mu.Lock()
	n := cs.suppressedAlerts
	if n == 0 || time.Since(cs.lastSuppressedEvent) < time.Minute {
		cs.mu.Unlock()
		return
	}
	cs.suppressedAlerts, cs.lastSuppressedEvent = 0, time.Now()
	cs.mu.Unlock()
	ec := &v1alpha1.ExternalConnector{ObjectMeta: metav1.ObjectMeta{Namespace: cs.key.Namespace, Name: cs.key.Name}}
	if err := e.client.Get(ctx, cs.key, ec); err != nil {
		return // the connector is gone: nobody to tell
	}
	e.event(ec, corev1.EventTypeWarning, v1alpha1.ReasonAlertsSuppressed, "Alert", fmt.Sprintf(
		"%d more alerts than the %d a minute announced as Events; every alert is an Activity labeled %s=true (kubectl get activities -l %s=true)",
		n, e.opts.AlertEvents, v1alpha1.LabelAlert, v1alpha1.LabelAlert))
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
