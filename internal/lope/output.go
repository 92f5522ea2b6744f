package lope

import (
	"encoding/json"

	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// Marshal writes ConversationRules as YAML that kubectl apply and parley run take, without
// what the Go types add on their own: status, creationTimestamp: null, and empty sections
// (tls: {}, memory: {}). Keys come out sorted, so the output is stable.
func Marshal(cr *v1alpha1.ConversationRules) ([]byte, error) {
	raw, err := json.Marshal(cr)
	if err != nil {
		return nil, err
	}
	var obj map[string]interface{}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	delete(obj, "status")
	if meta, ok := obj["metadata"].(map[string]interface{}); ok {
		for k, v := range meta {
			if v == nil {
				delete(meta, k)
			}
		}
	}
	if spec, ok := obj["spec"].(map[string]interface{}); ok {
		if op, ok := spec["operation"].(map[string]interface{}); ok {
			dropEmpty(op, "tls", "socket")
		}
		// Only whole sections: an empty basic rule ({}) is a rule that sends nothing.
		dropEmpty(spec, "memory", "conversation")
	}
	return yaml.Marshal(obj)
}

// dropEmpty removes the keys of m that hold an empty map.
func dropEmpty(m map[string]interface{}, keys ...string) {
	for _, k := range keys {
		if sub, ok := m[k].(map[string]interface{}); ok && len(sub) == 0 {
			delete(m, k)
		}
	}
}
