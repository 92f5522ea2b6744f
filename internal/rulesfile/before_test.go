package rulesfile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// readBefore is how documents were read before mistakes were reported with their
// positions: kubectl's document reader and sigs.k8s.io/yaml, stopping at the first error.
// Tests hold the reader to it: whatever it accepted (without a YAML 1.1 word in a string
// field) must read the same, and whatever it refused must still be refused.
func readBefore(name string, r io.Reader) (docs []Document, skipped []string, err error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for i := 1; ; i++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || isOnlyComments(raw) {
			continue
		}
		ds, sk, err := decodeBefore(fmt.Sprintf("%s#%d", name, i), raw)
		if err != nil {
			return nil, nil, err
		}
		docs, skipped = append(docs, ds...), append(skipped, sk...)
	}
	return docs, skipped, nil
}

func decodeBefore(source string, raw []byte) (docs []Document, skipped []string, err error) {
	var meta struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
	}
	if err := yaml.Unmarshal(raw, &meta); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", source, err)
	}
	switch meta.Kind {
	case Kind:
	case "List", Kind + "List":
		for i, item := range meta.Items {
			ds, sk, err := decodeBefore(fmt.Sprintf("%s/items[%d]", source, i), item)
			if err != nil {
				return nil, nil, err
			}
			docs, skipped = append(docs, ds...), append(skipped, sk...)
		}
		return docs, skipped, nil
	default:
		return nil, []string{fmt.Sprintf("%s: kind %q is not %s", source, meta.Kind, Kind)}, nil
	}
	if meta.APIVersion != v1alpha1.GroupVersion.String() {
		return nil, nil, fmt.Errorf("%s: apiVersion %q: want %s", source, meta.APIVersion, v1alpha1.GroupVersion)
	}
	doc := Document{Source: source}
	if err := yaml.UnmarshalStrict(raw, &doc.Rules); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", source, err)
	}
	return []Document{doc}, nil, nil
}

// splitBefore is kubectl's document reader, for comparison with split.
func splitBefore(data []byte) (docs [][]byte, err error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, err
		}
		docs = append(docs, bytes.Clone(raw))
	}
}
