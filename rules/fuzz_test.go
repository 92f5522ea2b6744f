package rules_test

import (
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

// FuzzCompile feeds arbitrary rules YAML to the compiler: it must either report errors or
// produce a program whose templates render, and never panic. Seeds: testdata/fuzz/FuzzCompile.
func FuzzCompile(f *testing.F) {
	f.Add([]byte(`{operation: {port: 1}, conversation: {greetings: {value: "hi {{IP}}"}}}`))
	f.Add([]byte(`
operation: {port: 1, encoding: binary}
memory: {connection: [{name: v, type: int, generate: {min: "-5", max: "5"}}]}
conversation:
  rules:
  - {id: 1, mode: Sync, regex: "\\x10(.)", captures: [{regex: "(.)", variable: v}], response: "{{v}}", trigger: [{ruleID: 2}]}
  - {id: 2, mode: Async, asyncLoop: {rules: [{ruleID: 2, delay: 1s, maxIterations: 3}]}}
  groups: [{id: g, regex: "x", rules: [{id: 3, mode: Hybrid, regex: "y", operation: {name: STR_SPLIT, inputs: [EXT_IN, " "], outputs: [v]}}]}]
`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var spec v1alpha1.ConversationRulesSpec
		if err := yaml.Unmarshal(data, &spec); err != nil {
			return
		}
		prog, errs := rules.Compile("fuzz", 1, &spec)
		if (prog == nil) == (len(errs) == 0) {
			t.Fatalf("program %v with %d errors", prog != nil, len(errs))
		}
		if prog == nil {
			for _, e := range errs {
				if e.Field == "" {
					t.Fatalf("error without a field path: %v", e)
				}
			}
			return
		}
		e := env{p: prog}
		for _, b := range []*rules.Basic{prog.Greetings, prog.Default, prog.Empty, prog.Timeout, prog.Ending} {
			if b != nil {
				b.Template.AppendTo(nil, prog.Codec, e)
			}
		}
		for _, v := range append(prog.Connection, prog.Global...) {
			v.Initial()
		}
	})
}
