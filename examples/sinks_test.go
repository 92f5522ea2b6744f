package examples

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/parley-dev/parley/internal/rulesfile"
	"github.com/parley-dev/parley/sink"
)

// Every ActivitySink example is valid (as parley check, the controller and the webhook
// judge it), and its destination can be built with the Secrets of its own file, as
// parley run builds it; each says how to try it.
func TestSinkExamples(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("sinks", "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no sink examples: %v", err)
	}
	types := map[string]bool{}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			raw, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(raw), "Try it:") {
				t.Error("no header saying how to try it")
			}
			files, err := rulesfile.ReadAll([]string{p}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(files.Sinks) != 1 || len(files.Rules) != 0 || len(files.Skipped) != 0 {
				t.Fatalf("%d sinks, %d rules, skipped %v", len(files.Sinks), len(files.Rules), files.Skipped)
			}
			secrets := map[string]map[string][]byte{}
			for _, s := range files.Secrets {
				secrets[s.Secret.Name] = s.Secret.Data
			}
			spec := &files.Sinks[0].Sink.Spec
			if errs := sink.Validate(spec, field.NewPath("spec")); len(errs) > 0 {
				t.Fatal(errs)
			}
			dest, err := sink.NewDestination(spec, sink.SecretsIn(secrets))
			if err != nil {
				t.Fatal(err)
			}
			_ = dest.Close()
			types[sink.Type(spec)] = true
		})
	}
	for _, want := range []string{sink.TypeWebhook, sink.TypeSyslog, sink.TypeKafka, sink.TypeEmail} {
		if !types[want] {
			t.Errorf("no example of a %s sink", want)
		}
	}
}
