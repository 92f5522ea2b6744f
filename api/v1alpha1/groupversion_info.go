// Package v1alpha1 holds the parley.io/v1alpha1 API: ConversationRules (how to talk),
// ExternalConnector (where to talk) and Activity (what happened).
//
// The ConversationRulesSpec types are the single model of the rules: the connector compiles
// exactly this spec, `parley run` reads the same YAML, and `parley import` converts Lope's
// format into it.
//
// +kubebuilder:object:generate=true
// +groupName=parley.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The API package depends only on apimachinery, so that clients can import it cheaply.
var (
	// GroupVersion is the group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "parley.io", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this package with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the kinds of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&ConversationRules{}, &ConversationRulesList{},
		&ExternalConnector{}, &ExternalConnectorList{},
		&Activity{}, &ActivityList{},
		&ActivitySink{}, &ActivitySinkList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
