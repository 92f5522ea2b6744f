package lope

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// TestManifestInput: a file that is already ConversationRules, in any of the forms parley
// check reads, is recognised as such rather than read as a Lope file without a port; another
// Kubernetes manifest is refused by its kind; a Lope file with a stray kind field is still a
// Lope file.
func TestManifestInput(t *testing.T) {
	example, err := os.ReadFile("../../examples/redis.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const connector = "apiVersion: parley.io/v1alpha1\nkind: ExternalConnector\nmetadata: {name: c}\nspec: {rules: r}\n"
	for name, text := range map[string]string{
		"example (comments first)":    string(example),
		"leading ---":                 "---\n" + string(example),
		"beside an ExternalConnector": connector + "---\n" + string(example),
		"kind: List": "apiVersion: v1\nkind: List\nitems:\n- apiVersion: parley.io/v1alpha1\n  kind: ConversationRules\n" +
			"  metadata: {name: r}\n  spec: {operation: {port: 7}}\n",
		"JSON": `{"apiVersion": "parley.io/v1alpha1", "kind": "ConversationRules", "metadata": {"name": "r"}, "spec": {"operation": {"port": 7}}}`,
	} {
		if _, err := Convert(lopeFile(t, text)); !errors.Is(err, ErrConversationRules) {
			t.Errorf("%s: %v, want ErrConversationRules", name, err)
		}
	}

	_, err = Convert(lopeFile(t, connector))
	if err == nil || errors.Is(err, ErrConversationRules) || err.Error() != "a Kubernetes manifest (kind ExternalConnector), not a Lope rules file" {
		t.Errorf("an ExternalConnector: %v", err)
	}

	res, err := Convert(lopeFile(t, "kind: decoy\nenable_use: yes\noperation: {port: 7}\n"))
	if err != nil || len(res.Dropped) != 1 || !strings.Contains(res.Dropped[0].String(), "kind: unknown Lope field") {
		t.Errorf("a Lope file with a kind field: %v %v", err, res)
	}
}
