package sink_test

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/sink"
)

// A Secret concerns the sinks that name it, and only those.
func TestReadersOf(t *testing.T) {
	webhook := func(name, secret string) v1alpha1.ActivitySink {
		s := v1alpha1.ActivitySink{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Spec: v1alpha1.ActivitySinkSpec{Webhook: &v1alpha1.WebhookSink{URL: "https://hooks.example/x"}}}
		if secret != "" {
			s.Spec.Webhook.SecretRef = &v1alpha1.SecretKeyRef{Name: secret}
		}
		return s
	}
	sinks := []v1alpha1.ActivitySink{webhook("a", "hook"), webhook("b", "other"), webhook("c", ""), webhook("d", "hook")}
	got := sink.ReadersOf(sinks, "hook")
	want := []types.NamespacedName{{Namespace: "ns", Name: "a"}, {Namespace: "ns", Name: "d"}}
	if !slices.Equal(got, want) {
		t.Errorf("readers of hook: %v, want %v", got, want)
	}
	if got := sink.ReadersOf(sinks, "nobody"); len(got) != 0 {
		t.Errorf("readers of an unnamed Secret: %v", got)
	}
}
