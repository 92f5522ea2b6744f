// Package rulesfile reads ConversationRules from YAML (or JSON) as `kubectl apply -f` takes
// them: files, directories, standard input ("-"), several documents per file, `kind: List`
// (what `kubectl get -o yaml` prints), strict field names, apiVersion and kind checked.
package rulesfile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

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

// Stdin is the path that names standard input, as with kubectl's -f -.
const Stdin = "-"

// ReadPaths reads every ConversationRules of paths, in order: a file, a directory (its .yaml,
// .yml and .json files in name order, not its subdirectories, as kubectl without -R), or
// Stdin, read from stdin.
func ReadPaths(paths []string, stdin io.Reader) (docs []Document, skipped []string, err error) {
	for _, path := range paths {
		var ds []Document
		var sk []string
		switch {
		case path == Stdin:
			ds, sk, err = Read("<stdin>", stdin)
		default:
			ds, sk, err = readPath(path)
		}
		if err != nil {
			return nil, nil, err
		}
		docs, skipped = append(docs, ds...), append(skipped, sk...)
	}
	return docs, skipped, nil
}

func readPath(path string) ([]Document, []string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if !info.IsDir() {
		return ReadFile(path)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, nil, err
	}
	var docs []Document
	var skipped []string
	found := false
	for _, e := range entries { // ReadDir sorts by name
		if e.IsDir() || !slices.Contains([]string{".yaml", ".yml", ".json"}, strings.ToLower(filepath.Ext(e.Name()))) {
			continue
		}
		found = true
		ds, sk, err := ReadFile(filepath.Join(path, e.Name()))
		if err != nil {
			return nil, nil, err
		}
		docs, skipped = append(docs, ds...), append(skipped, sk...)
	}
	if !found {
		return nil, nil, fmt.Errorf("%s: no .yaml, .yml or .json file in the directory", path)
	}
	return docs, skipped, nil
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
		ds, sk, err := decode(source, raw)
		if err != nil {
			return nil, nil, err
		}
		docs, skipped = append(docs, ds...), append(skipped, sk...)
	}
	return docs, skipped, nil
}

// decode reads one document: a ConversationRules, a list of objects (kind List, or
// ConversationRulesList), or another kind, skipped.
func decode(source string, raw []byte) (docs []Document, skipped []string, err error) {
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
			ds, sk, err := decode(fmt.Sprintf("%s/items[%d]", source, i), item)
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

func isOnlyComments(raw []byte) bool {
	for _, line := range bytes.Split(raw, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' {
			return false
		}
	}
	return true
}
