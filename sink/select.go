package sink

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/parley-dev/parley/api/v1alpha1"
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
