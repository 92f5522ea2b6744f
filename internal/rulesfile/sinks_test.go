package rulesfile

import (
	"strings"
	"testing"
)

// ReadAll keeps ActivitySinks and Secrets beside the rules, stringData merged over data as
// the API server does; Read's callers see them skipped; a wrong apiVersion or an
// unknown field is an error at its position.
func TestReadAllKeepsSinksAndSecrets(t *testing.T) {
	const doc = `apiVersion: v1
kind: Secret
metadata: {name: hook}
data: {hmacKey: b2xk, other: eA==}
stringData: {hmacKey: new}
---
apiVersion: parley.io/v1alpha1
kind: ActivitySink
metadata: {name: siem, labels: {team: blue}}
spec: {webhook: {url: "https://x/y", secretRef: {name: hook}}}
---
apiVersion: parley.io/v1alpha1
kind: ExternalConnector
metadata: {name: c}
`
	f, err := readAll("f.yaml", strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Secrets) != 1 || len(f.Sinks) != 1 || len(f.Rules) != 0 || len(f.Skipped) != 1 {
		t.Fatalf("%+v", f)
	}
	if d := f.Secrets[0].Secret.Data; string(d["hmacKey"]) != "new" || string(d["other"]) != "x" || f.Secrets[0].Secret.StringData != nil {
		t.Errorf("secret data %q", d)
	}
	if s := f.Sinks[0]; s.Source != "f.yaml#2" || s.Sink.Spec.Webhook.SecretRef.Name != "hook" || s.Sink.Labels["team"] != "blue" {
		t.Errorf("sink %+v", s)
	}
	_, skipped, err := Read("f.yaml", strings.NewReader(doc))
	if err != nil || len(skipped) != 3 {
		t.Errorf("Read skipped %v (%v)", skipped, err)
	}

	for bad, want := range map[string]string{
		"apiVersion: v2\nkind: Secret\nmetadata: {name: x}\n":                                                 `f.yaml:1:13: apiVersion: "v2": want v1`,
		"apiVersion: parley.io/v1alpha1\nkind: ActivitySink\nmetadata: {name: x}\nspec: {webhok: {url: x}}\n": "f.yaml:4:8: spec.webhok: unknown field",
	} {
		_, err := readAll("f.yaml", strings.NewReader(bad))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", bad, err, want)
		}
	}
}
