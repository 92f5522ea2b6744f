// Package rulesfile reads ConversationRules from YAML files as kubectl would take them:
// several documents per file, strict field names, apiVersion and kind checked.
package rulesfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// Kind is the kind this package reads.
const Kind = "ConversationRules"

// Document is one ConversationRules read from a file.
type Document struct {
	// Source names the file and the document's position in it, for messages.
	Source string
	Rules  v1alpha1.ConversationRules
}

// Name is the rules' name, or the source when metadata.name is empty.
func (d *Document) Name() string {
	if d.Rules.Name != "" {
		return d.Rules.Name
	}
	return d.Source
}

// ReadFile reads every ConversationRules document of a file. Documents of other kinds (an
// ExternalConnector kept beside its rules, say) are skipped; skipped reports them.
func ReadFile(path string) (docs []Document, skipped []string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return Read(path, f)
}

// Read is ReadFile over any reader; name is used in messages.
func Read(name string, r io.Reader) (docs []Document, skipped []string, err error) {
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
		source := fmt.Sprintf("%s#%d", name, i)
		var meta struct{ APIVersion, Kind string }
		if err := yaml.Unmarshal(raw, &meta); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", source, err)
		}
		if meta.Kind != Kind {
			skipped = append(skipped, fmt.Sprintf("%s: kind %q is not %s", source, meta.Kind, Kind))
			continue
		}
		if meta.APIVersion != v1alpha1.GroupVersion.String() {
			return nil, nil, fmt.Errorf("%s: apiVersion %q: want %s", source, meta.APIVersion, v1alpha1.GroupVersion)
		}
		doc := Document{Source: source}
		if err := yaml.UnmarshalStrict(raw, &doc.Rules); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", source, err)
		}
		docs = append(docs, doc)
	}
	return docs, skipped, nil
}

func isOnlyComments(raw []byte) bool {
	for _, line := range bytes.Split(raw, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' {
			return false
		}
	}
	return true
}
