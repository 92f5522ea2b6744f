package lope

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v2"
)

// ErrConversationRules is Convert's error for a file that already holds ConversationRules:
// there is nothing to convert.
var ErrConversationRules = errors.New("already ConversationRules, nothing to convert")

// notLope refuses a Kubernetes manifest, which a Lope rules file never is: its first
// document is a map with apiVersion and kind, keys no Lope file has. Read as a Lope file it
// would fail on a missing port, or report every field as unknown. The error is
// ErrConversationRules when a document, or an item of a List (kubectl get -o yaml), is a
// ConversationRules; otherwise it names the kinds found. Anything that is not YAML is left
// for the Lope decoder to report.
func notLope(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var kinds []string
	for first := true; ; {
		var doc interface{}
		if err := dec.Decode(&doc); err != nil {
			break // io.EOF, or not YAML
		}
		if doc == nil {
			continue // an empty document: a leading or trailing ---
		}
		kind, apiVersion, ok := typeMeta(doc)
		if first && !ok {
			return nil
		}
		first = false
		if !ok {
			continue
		}
		if !slices.Contains(kinds, kind) {
			kinds = append(kinds, kind)
		}
		if isConversationRules(kind, apiVersion) {
			return ErrConversationRules
		}
		if kind != "List" {
			continue
		}
		items, _ := doc.(map[interface{}]interface{})["items"].([]interface{})
		for _, item := range items {
			if kind, apiVersion, _ := typeMeta(item); isConversationRules(kind, apiVersion) {
				return ErrConversationRules
			}
		}
	}
	if len(kinds) == 0 {
		return nil
	}
	return fmt.Errorf("a Kubernetes manifest (kind %s), not a Lope rules file", strings.Join(kinds, ", "))
}

// typeMeta reads apiVersion and kind of a decoded document; ok says both are there.
func typeMeta(doc interface{}) (kind, apiVersion string, ok bool) {
	m, isMap := doc.(map[interface{}]interface{})
	if !isMap {
		return "", "", false
	}
	kind, hasKind := m["kind"].(string)
	apiVersion, hasVersion := m["apiVersion"].(string)
	return kind, apiVersion, hasKind && hasVersion
}

func isConversationRules(kind, apiVersion string) bool {
	return kind == "ConversationRules" && strings.HasPrefix(apiVersion, "parley.io/")
}
