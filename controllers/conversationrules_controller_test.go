package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

// rulesObject is a ConversationRules from a spec written as YAML.
func rulesObject(t *testing.T, ns, name, specYAML string) *v1alpha1.ConversationRules {
	t.Helper()
	cr := &v1alpha1.ConversationRules{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := yaml.UnmarshalStrict([]byte(specYAML), &cr.Spec); err != nil {
		t.Fatal(err)
	}
	return cr
}

// validOf waits until the reconciler has seen the current generation and returns the Valid
// condition.
func validOf(t *testing.T, cr *v1alpha1.ConversationRules) metav1.Condition {
	t.Helper()
	var got v1alpha1.ConversationRules
	var cond *metav1.Condition
	eventually(t, "Valid condition of "+cr.Name, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(cr), &got); err != nil {
			return err
		}
		cond = meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionValid)
		if cond == nil || got.Status.ObservedGeneration != got.Generation || cond.ObservedGeneration != got.Generation {
			return fmt.Errorf("status %+v", got.Status)
		}
		return nil
	})
	*cr = got
	return *cond
}

func TestValidRules(t *testing.T) {
	ns := namespace(t)
	cr := rulesObject(t, ns, "pinger", `
operation: {port: 7000}
conversation:
  greetings: {value: "hi"}
  rules: [{id: 1, mode: Sync, regex: PING, response: PONG}, {id: 2, mode: Async}]
  groups: [{id: g, rules: [{id: 3, mode: Sync, regex: X}]}]
`)
	if err := k8s.Create(context.Background(), cr); err != nil {
		t.Fatal(err)
	}
	c := validOf(t, cr)
	if c.Status != metav1.ConditionTrue || c.Reason != "Compiled" {
		t.Errorf("Valid: %+v", c)
	}
	if cr.Status.RuleCount != 3 || cr.Status.Hash != rules.Hash(&cr.Spec) {
		t.Errorf("status: ruleCount %d hash %s", cr.Status.RuleCount, cr.Status.Hash)
	}
	events := eventsFor(t, ns, cr.Name)
	if !strings.Contains(events, "Normal Compiled") {
		t.Errorf("events: %s", events)
	}
}

func TestInvalidRulesReportEveryErrorWithAReasonPerKind(t *testing.T) {
	ns := namespace(t)
	cases := []struct {
		name, spec, reason string
		messages           []string
	}{
		{"bad-regex", `{operation: {port: 1}, conversation: {rules: [{id: 1, mode: Sync, regex: "(?<=USER )x"}, {id: 2, mode: Sync, regex: "a(b"}]}}`,
			"InvalidValue", []string{"2 error(s)", "spec.conversation.rules[0].regex", "lookarounds", "spec.conversation.rules[1].regex"}},
		{"unknown-trigger", `{operation: {port: 1}, conversation: {rules: [{id: 1, mode: Sync, regex: a, trigger: [{ruleID: 9}]}]}}`,
			"NotFound", []string{"spec.conversation.rules[0].trigger[0].ruleID: Not found: 9"}},
		{"duplicate-ids", `{operation: {port: 1}, conversation: {rules: [{id: 1, mode: Sync, regex: a}], groups: [{id: g, rules: [{id: 1, mode: Sync, regex: b}]}]}}`,
			"DuplicateValue", []string{"spec.conversation.groups[0].rules[0].id: Duplicate value: 1"}},
		{"missing-regex", `{operation: {port: 1}, conversation: {rules: [{id: 1, mode: Sync}]}}`,
			"RequiredValue", []string{"spec.conversation.rules[0].regex: Required value"}},
		{"unknown-operation", `{operation: {port: 1}, memory: {connection: [{name: v}]}, conversation: {rules: [{id: 1, mode: Sync, regex: a, operation: {name: NBR_FROB, inputs: [v], outputs: [v]}}]}}`,
			"UnsupportedValue", []string{`spec.conversation.rules[0].operation.name: Unsupported value: "NBR_FROB"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cr := rulesObject(t, ns, tc.name, tc.spec)
			if err := k8s.Create(context.Background(), cr); err != nil {
				t.Fatal(err)
			}
			c := validOf(t, cr)
			if c.Status != metav1.ConditionFalse || c.Reason != tc.reason {
				t.Errorf("Valid: %s %s", c.Status, c.Reason)
			}
			for _, m := range tc.messages {
				if !strings.Contains(c.Message, m) {
					t.Errorf("message lacks %q: %s", m, c.Message)
				}
			}
			if events := eventsFor(t, ns, tc.name); !strings.Contains(events, "Warning "+tc.reason) {
				t.Errorf("events: %s", events)
			}
		})
	}
}

func TestRulesEditsAreRevalidated(t *testing.T) {
	ns := namespace(t)
	cr := rulesObject(t, ns, "edited", `{operation: {port: 1}, conversation: {rules: [{id: 1, mode: Sync, regex: "a("}]}}`)
	if err := k8s.Create(context.Background(), cr); err != nil {
		t.Fatal(err)
	}
	if c := validOf(t, cr); c.Status != metav1.ConditionFalse {
		t.Fatalf("Valid: %+v", c)
	}
	cr.Spec.Conversation.Rules[0].Regex = "a"
	if err := k8s.Update(context.Background(), cr); err != nil {
		t.Fatal(err)
	}
	if c := validOf(t, cr); c.Status != metav1.ConditionTrue || cr.Status.ObservedGeneration != 2 {
		t.Errorf("after the fix: %+v, observed %d", c, cr.Status.ObservedGeneration)
	}
}

// eventsFor lists "TYPE REASON: message" of the events about an object.
func eventsFor(t *testing.T, ns, name string) string {
	t.Helper()
	var out string
	eventually(t, "events of "+name, func() error {
		var list corev1.EventList
		if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			return err
		}
		var b strings.Builder
		for _, e := range list.Items {
			if e.InvolvedObject.Name == name {
				fmt.Fprintf(&b, "%s %s: %s\n", e.Type, e.Reason, e.Message)
			}
		}
		if out = b.String(); out == "" {
			return fmt.Errorf("no events yet")
		}
		return nil
	})
	return out
}

// rulesValidMetric reads parley_conversationrules_valid of one object from the registry the
// manager serves; ok is false when it has no series.
func rulesValidMetric(t *testing.T, ns, name string) (value float64, ok bool) {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "parley_conversationrules_valid" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["namespace"] == ns && labels["name"] == name {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// The metric follows the Valid condition: 0 while the rules do not compile, 1 once they do,
// and no series once the object is deleted.
func TestRulesValidMetric(t *testing.T) {
	ns := namespace(t)
	cr := rulesObject(t, ns, "metered", `{operation: {port: 1}, conversation: {rules: [{id: 1, mode: Sync, regex: "a("}]}}`)
	if _, ok := rulesValidMetric(t, ns, cr.Name); ok {
		t.Fatalf("a series before the object exists")
	}
	if err := k8s.Create(context.Background(), cr); err != nil {
		t.Fatal(err)
	}
	if c := validOf(t, cr); c.Status != metav1.ConditionFalse {
		t.Fatalf("Valid: %+v", c)
	}
	// The status is patched after the metric is set: the condition is there, so is the value.
	if v, ok := rulesValidMetric(t, ns, cr.Name); !ok || v != 0 {
		t.Errorf("invalid rules: parley_conversationrules_valid %v (series %v), want 0", v, ok)
	}
	cr.Spec.Conversation.Rules[0].Regex = "a"
	if err := k8s.Update(context.Background(), cr); err != nil {
		t.Fatal(err)
	}
	if c := validOf(t, cr); c.Status != metav1.ConditionTrue {
		t.Fatalf("Valid after the fix: %+v", c)
	}
	if v, ok := rulesValidMetric(t, ns, cr.Name); !ok || v != 1 {
		t.Errorf("fixed rules: parley_conversationrules_valid %v (series %v), want 1", v, ok)
	}
	if err := k8s.Delete(context.Background(), cr); err != nil {
		t.Fatal(err)
	}
	eventually(t, "series of the deleted rules removed", func() error {
		if v, ok := rulesValidMetric(t, ns, cr.Name); ok {
			return fmt.Errorf("parley_conversationrules_valid still %v", v)
		}
		return nil
	})
}
