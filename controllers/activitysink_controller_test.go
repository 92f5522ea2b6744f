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
	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
)

func sinkObject(t *testing.T, ns, name, specYAML string) *v1alpha1.ActivitySink {
	t.Helper()
	s := &v1alpha1.ActivitySink{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := yaml.UnmarshalStrict([]byte(specYAML), &s.Spec); err != nil {
		t.Fatal(err)
	}
	return s
}

// readyOf waits until the controller has judged the sink's current generation with the
// given reason, and returns the sink.
func readyOf(t *testing.T, s *v1alpha1.ActivitySink, reason string) (*v1alpha1.ActivitySink, metav1.Condition) {
	t.Helper()
	var got v1alpha1.ActivitySink
	var cond *metav1.Condition
	eventually(t, "Ready "+reason+" of "+s.Name, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(s), &got); err != nil {
			return err
		}
		cond = meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
		if cond == nil || cond.ObservedGeneration != got.Generation || cond.Reason != reason {
			return fmt.Errorf("status %+v", got.Status)
		}
		return nil
	})
	return &got, *cond
}

func TestActivitySinkReady(t *testing.T) {
	ns := namespace(t)
	s := sinkObject(t, ns, "siem", `
connectorSelector: {matchLabels: {team: blue}}
filter: {alertsOnly: true}
syslog: {address: "tcp://siem.example:6514", format: CEF, facility: local3}`)
	if err := k8s.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	got, cond := readyOf(t, s, v1alpha1.ReasonSinkConfigured)
	if cond.Status != metav1.ConditionTrue || got.Status.Type != "Syslog" || got.Status.ObservedGeneration != got.Generation {
		t.Fatalf("condition %+v, status %+v", cond, got.Status)
	}
}

// Secrets: a missing Secret, then one without the key, then the key: each is the reason in
// turn, the Secret's creation and update waking the controller.
func TestActivitySinkSecrets(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t)
	s := sinkObject(t, ns, "hook", `
webhook: {url: "https://hooks.example/x", secretRef: {name: hook}, tls: {caSecretRef: {name: hook-ca}}}`)
	if err := k8s.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	_, cond := readyOf(t, s, v1alpha1.ReasonSecretNotFound)
	for _, want := range []string{`spec.webhook.secretRef: Secret "hook" not found`, `spec.webhook.tls.caSecretRef: Secret "hook-ca" not found`} {
		if !strings.Contains(cond.Message, want) {
			t.Errorf("message %q lacks %q", cond.Message, want)
		}
	}
	hook := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hook"}, Data: map[string][]byte{"other": []byte("x")}}
	ca := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hook-ca"}, Data: map[string][]byte{"ca.crt": []byte("PEM")}}
	for _, sec := range []*corev1.Secret{hook, ca} {
		if err := k8s.Create(ctx, sec); err != nil {
			t.Fatal(err)
		}
	}
	_, cond = readyOf(t, s, v1alpha1.ReasonSecretKeyMissing)
	if cond.Message != `spec.webhook.secretRef: Secret "hook" has no key "hmacKey"` {
		t.Errorf("message %q", cond.Message)
	}
	hook.Data["hmacKey"] = []byte("s3cret")
	if err := k8s.Update(ctx, hook); err != nil {
		t.Fatal(err)
	}
	got, cond := readyOf(t, s, v1alpha1.ReasonSinkConfigured)
	if cond.Status != metav1.ConditionTrue || got.Status.Type != "Webhook" {
		t.Fatalf("condition %+v, type %q", cond, got.Status.Type)
	}
}

// What the schema cannot check, the controller does, naming every field.
func TestActivitySinkInvalid(t *testing.T) {
	ns := namespace(t)
	s := sinkObject(t, ns, "bad", `
email: {smtp: "mail.example", from: "not an address", to: ["soc@example", "@"]}`)
	if err := k8s.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	_, cond := readyOf(t, s, v1alpha1.ReasonSinkInvalid)
	for _, want := range []string{`spec.email.smtp: Invalid value: "mail.example"`, `spec.email.from: Invalid value: "not an address"`, `spec.email.to[1]: Invalid value: "@"`} {
		if !strings.Contains(cond.Message, want) {
			t.Errorf("message %q lacks %q", cond.Message, want)
		}
	}
	if strings.Contains(cond.Message, "to[0]") {
		t.Errorf("message %q blames a valid recipient", cond.Message)
	}
}

// The API server refuses a sink with no destination or two.
func TestActivitySinkExactlyOneDestination(t *testing.T) {
	ns := namespace(t)
	for _, spec := range []string{
		`filter: {alertsOnly: true}`,
		`{webhook: {url: "https://a.example"}, syslog: {address: "udp://b.example:514"}}`,
	} {
		err := k8s.Create(context.Background(), sinkObject(t, ns, "two", spec))
		if err == nil || !strings.Contains(err.Error(), "set exactly one of webhook, syslog, kafka or email") {
			t.Errorf("%s: %v", spec, err)
		}
	}
}
