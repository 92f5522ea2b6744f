// Package examples embeds the example rules so that `parley run` has a default to serve on
// any machine, and tests can load every example by name.
package examples

import (
	"bytes"
	"embed"
	"fmt"

	"github.com/parley-dev/parley/internal/rulesfile"
)

//go:embed *.yaml
var files embed.FS

// Default is the example `parley run` serves without -f.
const Default = "redis.yaml"

// DefaultHint tells a newcomer how to talk to the default example.
const DefaultHint = "try: redis-cli -p 6379 PING"

// Read returns the raw YAML of an example.
func Read(name string) ([]byte, error) { return files.ReadFile(name) }

// Rules returns the ConversationRules of an example file (the first document).
func Rules(name string) (rulesfile.Document, error) {
	raw, err := Read(name)
	if err != nil {
		return rulesfile.Document{}, err
	}
	docs, _, err := rulesfile.Read("examples/"+name, bytes.NewReader(raw))
	if err != nil {
		return rulesfile.Document{}, err
	}
	if len(docs) == 0 {
		return rulesfile.Document{}, fmt.Errorf("examples/%s: no %s", name, rulesfile.Kind)
	}
	return docs[0], nil
}

// DefaultRules returns the rules of Default.
func DefaultRules() (rulesfile.Document, error) { return Rules(Default) }
