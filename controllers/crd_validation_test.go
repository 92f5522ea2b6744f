package controllers_test

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// The API server itself refuses objects that break the CRDs' OpenAPI and CEL rules, with a
// message naming the field.
func TestCRDValidationRefusesBadObjects(t *testing.T) {
	ns := namespace(t)
	meta := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }
	ptr := func(v int32) *int32 { return &v }
	cases := []struct {
		name string
		obj  client.Object
		want []string
	}{
		{"port out of range", &v1alpha1.ConversationRules{ObjectMeta: meta("a"), Spec: v1alpha1.ConversationRulesSpec{
			Operation: v1alpha1.Operation{Port: 70000}}}, []string{"spec.operation.port", "less than or equal to 65535"}},
		{"enums", &v1alpha1.ConversationRules{ObjectMeta: meta("b"), Spec: v1alpha1.ConversationRulesSpec{
			Operation: v1alpha1.Operation{Port: 1, Mode: "Peer", Transport: "SCTP", Encoding: "latin-1"}}},
			[]string{`spec.operation.mode: Unsupported value: "Peer"`, "spec.operation.transport", "spec.operation.encoding"}},
		{"rule id not positive", &v1alpha1.ConversationRules{ObjectMeta: meta("c"), Spec: v1alpha1.ConversationRulesSpec{
			Operation:    v1alpha1.Operation{Port: 1},
			Conversation: v1alpha1.Conversation{Rules: []v1alpha1.Rule{{ID: 0, Mode: v1alpha1.RuleSync}}}}},
			[]string{"spec.conversation.rules[0].id", "greater than or equal to 1"}},
		{"maxInputSize too large", &v1alpha1.ConversationRules{ObjectMeta: meta("d"), Spec: v1alpha1.ConversationRulesSpec{
			Operation: v1alpha1.Operation{Port: 1, MaxInputSize: ptr(2 << 20)}}}, []string{"spec.operation.maxInputSize"}},
		{"rules and group", &v1alpha1.ExternalConnector{ObjectMeta: meta("e"), Spec: v1alpha1.ExternalConnectorSpec{
			Rules: "x", Group: "y"}}, []string{"set exactly one of rules (a ConversationRules name) or group"}},
		{"neither rules nor group", &v1alpha1.ExternalConnector{ObjectMeta: meta("f")}, []string{"set exactly one of rules"}},
		{"connector enums and ranges", &v1alpha1.ExternalConnector{ObjectMeta: meta("g"), Spec: v1alpha1.ExternalConnectorSpec{
			Rules: "x", Port: ptr(0), Service: v1alpha1.ConnectorService{Type: "ExternalName"},
			Activities: v1alpha1.ActivityPolicy{Record: "Some"}}},
			[]string{"spec.port", "spec.service.type", `spec.activities.record: Unsupported value: "Some"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := k8s.Create(context.Background(), tc.obj)
			if err == nil {
				t.Fatal("the API server accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}
