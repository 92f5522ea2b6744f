package lope

import (
	"encoding/json"

	yaml "go.yaml.in/yaml/v2"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// Marshal writes ConversationRules as YAML that kubectl apply and parley run take, without
// what the Go types add on their own: status, creationTimestamp: null, and empty sections
// (tls: {}, memory: {}).
//
// Keys come out in the order the API types declare their fields, which is the order of the
// reference tables and examples of docs/rules.md: apiVersion, kind, metadata, then spec's
// description, group, enabled, operation, memory, conversation; in a rule id, mode, regex,
// response, ... The JSON encoding of the types already lists fields in that order, so it is
// read back as ordered YAML maps rather than as Go maps, which would sort the keys. Styles
// (quoting, indentation) are those of sigs.k8s.io/yaml, which takes the same path.
func Marshal(cr *v1alpha1.ConversationRules) ([]byte, error) {
	raw, err := json.Marshal(cr)
	if err != nil {
		return nil, err
	}
	var obj yaml.MapSlice
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	obj = without(obj, func(k string, _ interface{}) bool { return k == "status" })
	// TypeMeta declares kind before apiVersion; every manifest starts with apiVersion.
	for i := range obj {
		if obj[i].Key == "apiVersion" {
			obj = append(yaml.MapSlice{obj[i]}, append(obj[:i:i], obj[i+1:]...)...)
			break
		}
	}
	for i := range obj {
		switch obj[i].Key {
		case "metadata":
			obj[i].Value = withoutEmpty(obj[i].Value, func(_ string, v interface{}) bool { return v == nil })
		case "spec":
			spec, _ := obj[i].Value.(yaml.MapSlice)
			for j := range spec {
				if spec[j].Key == "operation" {
					spec[j].Value = withoutEmpty(spec[j].Value, emptySection("tls", "socket"))
				}
			}
			// Only whole sections: an empty basic rule ({}) is a rule that sends nothing.
			obj[i].Value = without(spec, emptySection("memory", "conversation"))
		}
	}
	return yaml.Marshal(obj)
}

// without returns m without the entries drop selects.
func without(m yaml.MapSlice, drop func(key string, value interface{}) bool) yaml.MapSlice {
	out := m[:0:0]
	for _, item := range m {
		if k, ok := item.Key.(string); ok && drop(k, item.Value) {
			continue
		}
		out = append(out, item)
	}
	return out
}

// withoutEmpty is without for a value that should be a map; anything else is returned as
// it is.
func withoutEmpty(v interface{}, drop func(string, interface{}) bool) interface{} {
	if m, ok := v.(yaml.MapSlice); ok {
		return without(m, drop)
	}
	return v
}

// emptySection selects the given keys when they hold an empty map.
func emptySection(keys ...string) func(string, interface{}) bool {
	return func(k string, v interface{}) bool {
		m, ok := v.(yaml.MapSlice)
		if !ok || len(m) > 0 {
			return false
		}
		for _, key := range keys {
			if k == key {
				return true
			}
		}
		return false
	}
}
