package admission

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/engine/pki"
	"github.com/parley-dev/parley/internal/envtestutil"
)

func namespace(t *testing.T) string { t.Helper(); return envtestutil.Namespace(t, admin, "admission-") }

// brokenObject is brokenRules as an object.
func brokenObject(ns, name string) *v1alpha1.ConversationRules {
	var cr v1alpha1.ConversationRules
	if err := yaml.UnmarshalStrict([]byte(brokenRules), &cr); err != nil {
		panic(err)
	}
	cr.Namespace, cr.Name = ns, name
	return &cr
}

func validObject(ns, name string) *v1alpha1.ConversationRules {
	return &v1alpha1.ConversationRules{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.ConversationRulesSpec{
			Operation:    v1alpha1.Operation{Mode: v1alpha1.ModeServer, Transport: v1alpha1.TransportTCP, Port: 7000},
			Conversation: v1alpha1.Conversation{Rules: []v1alpha1.Rule{{ID: 1, Mode: v1alpha1.RuleSync, Regex: "^PING", Response: "PONG"}}},
		},
	}
}

// isWebhookRefusal: the error is the webhook's refusal, not a failure to call it.
func isWebhookRefusal(err error) bool {
	return apierrors.IsInvalid(err) && strings.Contains(err.Error(), "denied the request")
}

// causes are a refusal's causes as kubectl prints them: "<field>: <message>".
func causes(t *testing.T, err error) []string {
	t.Helper()
	var status apierrors.APIStatus
	if !errors.As(err, &status) || status.Status().Details == nil {
		t.Fatalf("want a refusal with details, got %v", err)
	}
	var out []string
	for _, c := range status.Status().Details.Causes {
		out = append(out, c.Field+": "+c.Message)
	}
	return out
}

// refused checks that err is the webhook's refusal naming the webhook, with causes
// starting with want, in order.
func refused(t *testing.T, err error, webhook string, want []string) {
	t.Helper()
	if !isWebhookRefusal(err) {
		t.Fatalf("want the webhook's refusal, got %v", err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("admission webhook %q denied the request", webhook)) {
		t.Errorf("the refusal does not name webhook %s: %v", webhook, err)
	}
	checkLines(t, "causes", causes(t, err), want)
}

func TestRulesThatDoNotCompileAreRefusedWithEveryFieldPath(t *testing.T) {
	ns := namespace(t)
	cr := brokenObject(ns, "broken")
	err := admin.Create(context.Background(), cr)
	want, _ := CheckRules(&cr.Spec)
	var lines []string
	for _, e := range want {
		lines = append(lines, e.Field+": "+e.ErrorBody())
	}
	if len(lines) != 3 {
		t.Fatalf("the test's rules have %d errors; want 3", len(lines))
	}
	refused(t, err, "conversationrules.validate.parley.io", lines)
	if !strings.Contains(causes(t, err)[0], "spec.conversation.rules[0] (id 8).response") {
		t.Errorf("first cause %q does not name the rule by its id", causes(t, err)[0])
	}
	if err := admin.Get(context.Background(), client.ObjectKeyFromObject(cr), &v1alpha1.ConversationRules{}); !apierrors.IsNotFound(err) {
		t.Errorf("refused rules were stored: %v", err)
	}
}

// warnings collects the warnings the API server returns to one client.
type warnings struct {
	mu   sync.Mutex
	text []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.text = append(w.text, text)
}

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.text)
}

func warningClient(t *testing.T) (client.Client, *warnings) {
	t.Helper()
	w := &warnings{}
	cfg := rest.CopyConfig(adminCfg)
	cfg.WarningHandler = w
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c, w
}

func TestValidRulesAreAcceptedWithTheirLintWarnings(t *testing.T) {
	ns := namespace(t)
	c, w := warningClient(t)
	cr := validObject(ns, "queue")
	cr.Spec.Operation.ConnectionQueue = ptr.To[int32](2)
	cr.Spec.Operation.MaxConcurrentConnections = ptr.To[int32](5)
	if err := c.Create(context.Background(), cr); err != nil {
		t.Fatalf("valid rules refused: %v", err)
	}
	_, lint := CheckRules(&cr.Spec)
	if len(lint) != 1 || !slices.Equal(w.all(), lint) {
		t.Errorf("warnings returned to the client:\n%q\nwant rules.Lint's:\n%q", w.all(), lint)
	}

	c, w = warningClient(t)
	if err := c.Create(context.Background(), validObject(ns, "quiet")); err != nil {
		t.Fatal(err)
	}
	if got := w.all(); len(got) != 0 {
		t.Errorf("rules without lint findings got warnings %q", got)
	}
}

func TestUpdatesAreValidated(t *testing.T) {
	ns := namespace(t)
	ctx := context.Background()
	cr := validObject(ns, "edited")
	if err := admin.Create(ctx, cr); err != nil {
		t.Fatal(err)
	}
	cr.Spec.Conversation.Rules[0].Regex = "(?<=x)y"
	err := admin.Update(ctx, cr)
	refused(t, err, "conversationrules.validate.parley.io", []string{"spec.conversation.rules[0] (id 1).regex: Invalid value"})
	var stored v1alpha1.ConversationRules
	if err := admin.Get(ctx, client.ObjectKeyFromObject(cr), &stored); err != nil {
		t.Fatal(err)
	}
	if stored.Spec.Conversation.Rules[0].Regex != "^PING" {
		t.Errorf("a refused update changed the stored rules: regex %q", stored.Spec.Conversation.Rules[0].Regex)
	}
	stored.Spec.Conversation.Rules[0].Regex = "^PONG"
	if err := admin.Update(ctx, &stored); err != nil {
		t.Errorf("a valid update refused: %v", err)
	}
}

func TestConnectorsThatCannotWorkAreRefused(t *testing.T) {
	ns := namespace(t)
	ctx := context.Background()
	ec := &v1alpha1.ExternalConnector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "decoy"},
		Spec: v1alpha1.ExternalConnectorSpec{Rules: "fake-redis", IP: "10.0.0.1:6379",
			TLS: &v1alpha1.ConnectorTLS{SecretName: "Redis_TLS"}},
	}
	err := admin.Create(ctx, ec)
	refused(t, err, "externalconnectors.validate.parley.io", []string{"spec.ip: Invalid value", "spec.tls.secretName: Invalid value"})

	// Rules that do not exist yet are not the webhook's business.
	ec.Spec.IP, ec.Spec.TLS = "", nil
	if err := admin.Create(ctx, ec); err != nil {
		t.Fatalf("a connector whose rules do not exist yet was refused: %v", err)
	}
	ec.Spec.Service.Type = corev1.ServiceTypeLoadBalancer
	ec.Spec.Pod.Labels = map[string]string{"team": "a b"}
	refused(t, admin.Update(ctx, ec), "externalconnectors.validate.parley.io", []string{"spec.pod.labels: Invalid value"})
}

// TestObjectsStoredBeforeTheWebhookCanBeChangedAndDeleted: invalid objects that exist
// (stored here past the webhook, as before it was installed) keep working as far as
// metadata goes: labels, finalizers, deletion. Only a new spec is judged.
func TestObjectsStoredBeforeTheWebhookCanBeChangedAndDeleted(t *testing.T) {
	ns := namespace(t)
	ctx := context.Background()
	cr := brokenObject(ns, "old-broken")
	cr.Labels = map[string]string{bypassLabel: "true"}
	if err := admin.Create(ctx, cr); err != nil {
		t.Fatal(err)
	}
	ec := &v1alpha1.ExternalConnector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "old-decoy", Labels: map[string]string{bypassLabel: "true"},
			Finalizers: []string{v1alpha1.FinalizerGracefulEnd}},
		Spec: v1alpha1.ExternalConnectorSpec{Rules: "old-broken", IP: "not an address"},
	}
	if err := admin.Create(ctx, ec); err != nil {
		t.Fatal(err)
	}

	// Without the label the webhook sees every update; an unchanged spec passes.
	delete(cr.Labels, bypassLabel)
	if err := admin.Update(ctx, cr); err != nil {
		t.Fatalf("a label change of rules stored before the webhook was refused: %v", err)
	}
	delete(ec.Labels, bypassLabel)
	if err := admin.Update(ctx, ec); err != nil {
		t.Fatalf("a label change of a connector stored before the webhook was refused: %v", err)
	}
	// A new spec is judged, even if it is still broken in the same way.
	cr.Spec.Description = "edited"
	refused(t, admin.Update(ctx, cr), "conversationrules.validate.parley.io", []string{
		"spec.conversation.rules[0] (id 8).response", "spec.conversation.rules[0] (id 8).trigger[0].ruleID", "spec.conversation.rules[1] (id 7).regex"})

	if err := admin.Delete(ctx, cr); err != nil {
		t.Errorf("delete of invalid rules refused: %v", err)
	}
	if err := admin.Delete(ctx, ec); err != nil {
		t.Fatalf("delete of an invalid connector refused: %v", err)
	}
	// The operator removes its finalizer with an update; nothing may stop that.
	if err := admin.Get(ctx, client.ObjectKeyFromObject(ec), ec); err != nil {
		t.Fatal(err)
	}
	ec.Finalizers = nil
	if err := admin.Update(ctx, ec); err != nil {
		t.Fatalf("removing the finalizer of a connector being deleted was refused: %v", err)
	}
	envtestutil.Eventually(t, wait, "the connector is gone", func() error {
		err := admin.Get(ctx, client.ObjectKeyFromObject(ec), &v1alpha1.ExternalConnector{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
}

// TestCAIsInjectedAgainWhenBlanked: a helm upgrade or kubectl apply may write the
// configuration without the bundle; the operator puts its CA back.
func TestCAIsInjectedAgainWhenBlanked(t *testing.T) {
	ctx := context.Background()
	var secret corev1.Secret
	if err := admin.Get(ctx, client.ObjectKey{Namespace: systemNS, Name: secretName}, &secret); err != nil {
		t.Fatal(err)
	}
	ca := secret.Data[pki.CACertKey]
	if len(ca) == 0 {
		t.Fatal("no CA in the webhook Secret")
	}
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := admin.Get(ctx, client.ObjectKey{Name: ConfigurationName}, &vwc); err != nil {
		t.Fatal(err)
	}
	for _, w := range vwc.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, ca) {
			t.Fatalf("webhook %s: caBundle is not the Secret's CA", w.Name)
		}
	}
	patch := client.MergeFrom(vwc.DeepCopy())
	for i := range vwc.Webhooks {
		vwc.Webhooks[i].ClientConfig.CABundle = nil
	}
	if err := admin.Patch(ctx, &vwc, patch); err != nil {
		t.Fatal(err)
	}
	envtestutil.Eventually(t, wait, "the CA is injected again", func() error {
		var got admissionregistrationv1.ValidatingWebhookConfiguration
		if err := admin.Get(ctx, client.ObjectKey{Name: ConfigurationName}, &got); err != nil {
			return err
		}
		for _, w := range got.Webhooks {
			if !bytes.Equal(w.ClientConfig.CABundle, ca) {
				return fmt.Errorf("webhook %s: caBundle of %d bytes", w.Name, len(w.ClientConfig.CABundle))
			}
		}
		return nil
	})
	if err := waitInForce(ctx); err != nil {
		t.Fatalf("the webhook is not in force after the CA came back: %v", err)
	}
}

func TestReadyzIncludesTheWebhook(t *testing.T) {
	resp, err := http.Get("http://" + probeAddr + "/readyz/webhook")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz/webhook: %s %s", resp.Status, body)
	}
}

// An ActivitySink that cannot work is refused with every error and its field path, as
// CheckActivitySink and `parley check` say it (what the schema checks, as filter types, it
// refuses before). A sink
// whose Secret does not exist yet is taken; a changed spec is judged again.
func TestActivitySinksThatCannotWorkAreRefused(t *testing.T) {
	ns := namespace(t)
	ctx := context.Background()
	as := &v1alpha1.ActivitySink{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "siem"},
		Spec: v1alpha1.ActivitySinkSpec{
			Webhook: &v1alpha1.WebhookSink{URL: "ftp://hooks.example/x", SecretRef: &v1alpha1.SecretKeyRef{Name: "hook"}, TLS: &v1alpha1.SinkTLS{}},
		},
	}
	var want []string
	for _, e := range CheckActivitySink(&as.Spec) {
		want = append(want, e.Field+": "+e.ErrorBody())
	}
	if len(want) != 2 {
		t.Fatalf("the test's sink has %d errors; want 2", len(want))
	}
	refused(t, admin.Create(ctx, as), "activitysinks.validate.parley.io", want)

	as.Spec.Webhook.URL = "https://hooks.example/x"
	if err := admin.Create(ctx, as); err != nil {
		t.Fatalf("a valid sink whose Secret does not exist yet was refused: %v", err)
	}
	as.Spec.Webhook = nil
	as.Spec.Syslog = &v1alpha1.SyslogSink{Address: "tcp://siem", Facility: "local9"}
	refused(t, admin.Update(ctx, as), "activitysinks.validate.parley.io", []string{"spec.syslog.address: Invalid value", "spec.syslog.facility: Invalid value"})
}
