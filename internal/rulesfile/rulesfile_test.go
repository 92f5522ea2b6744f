package rulesfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sameAsBefore holds Read to readBefore on one input: what was accepted reads the same,
// unless a string field takes an unquoted YAML 1.1 word (then only that is reported), and
// what was refused is still refused. Every position is inside the input.
func sameAsBefore(t testing.TB, name string, data []byte) {
	t.Helper()
	docs, skipped, err := Read(name, bytes.NewReader(data))
	before, beforeSkipped, beforeErr := readBefore(name, bytes.NewReader(data))
	lines := yamlLines(data)
	var es Errors
	if err != nil && !errors.As(err, &es) {
		t.Fatalf("%s: error %T is not Errors: %v", name, err, err)
	}
	refused := map[string]bool{}
	for _, e := range es {
		var re *Error
		if !errors.As(e, &re) {
			t.Errorf("%s: %v is not an *Error", name, e)
			continue
		}
		if re.Line < 0 || re.Line > lines || re.Column < 0 || re.Message == "" || re.Source == "" {
			t.Errorf("%s: bad error %#v (input has %d lines)", name, re, lines)
		}
		// Two refusals are new: a YAML 1.1 word in a string field, and Lists nested deeper
		// than any real file nests them.
		if beforeErr == nil && !re.quoteIt && !strings.HasSuffix(re.Message, "Lists: flatten it") {
			t.Errorf("%s: refused, but was accepted: %v", name, re)
		}
		refused[re.Source] = true
	}
	if beforeErr != nil {
		if err == nil {
			t.Errorf("%s: accepted, but was refused: %v", name, beforeErr)
		}
		return
	}
	if err == nil && !reflect.DeepEqual(docs, before) {
		t.Errorf("%s: reads differently:\nnow    %+v\nbefore %+v", name, docs, before)
	}
	var kept []Document
	for _, d := range before {
		if !refused[d.Source] {
			kept = append(kept, d)
		}
	}
	if err != nil && !reflect.DeepEqual(docs, kept) {
		t.Errorf("%s: the documents without a mistake read differently:\nnow    %+v\nbefore %+v", name, docs, kept)
	}
	if len(skipped) != len(beforeSkipped) {
		t.Errorf("%s: skipped %q, before %q", name, skipped, beforeSkipped)
	}
}

// yamlLines counts lines as YAML does: a lone "\r", NEL, LS and PS break lines too.
func yamlLines(data []byte) int {
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	return 1 + strings.Count(s, "\n") + strings.Count(s, "\r") + strings.Count(s, "\u0085") +
		strings.Count(s, "\u2028") + strings.Count(s, "\u2029")
}

// TestEveryRepositoryFileReadsAsBefore reads every YAML and JSON file of the repository
// (the examples, the import's golden files, the CRDs, the chart, ...) both ways.
func TestEveryRepositoryFileReadsAsBefore(t *testing.T) {
	root := filepath.Join("..", "..")
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" || d.Name() == "bin" {
				return filepath.SkipDir
			}
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
		default:
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n++
		sameAsBefore(t, path, data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 20 {
		t.Errorf("only %d files read: the walk is broken", n)
	}
}

// TestSplitIsKubectls: documents are cut where kubectl's reader cuts them, and each starts
// on the line split says.
func TestSplitIsKubectls(t *testing.T) {
	for _, in := range []string{
		"",
		"a: 1",
		"a: 1\n",
		"---\na: 1\n---\nb: 2\n",
		"a: 1\r\n---\r\nb: 2\r\n",
		"a: 1\n--- # comment\nb: 2\n...\n",
		"---\n---\n---\na: 1\n",
		"\n\n---\n\n",
		"a: 1\n---x\nb: 2\n",
		"a: 1\n--- x\nb: 2\n",
		"a: |\n  ---\n  text\n",
		"a: 1\r",
		"a: 1\r\r\n---\n",
		"# only\n# comments\n---\nb: 1",
		"----\na: 1\n",
		strings.Repeat("x", 5000) + "\n---\n" + strings.Repeat("y", 9000),
	} {
		checkSplit(t, []byte(in))
	}
}

func checkSplit(t testing.TB, data []byte) {
	t.Helper()
	parts, splitErr := split(data)
	before, beforeErr := splitBefore(data)
	if (splitErr != nil) != (beforeErr != nil) {
		t.Fatalf("%q: error %v, kubectl's %v", data, splitErr, beforeErr)
	}
	if len(parts) != len(before) {
		t.Fatalf("%q: %d documents, kubectl's reader %d", data, len(parts), len(before))
	}
	lines := strings.Split(string(data), "\n")
	for i, p := range parts {
		if !bytes.Equal(p.raw, before[i]) {
			t.Errorf("%q: document %d is %q, kubectl's %q", data, i, p.raw, before[i])
		}
		first, _ := strings.CutSuffix(lines[p.line-1], "\r")
		if !strings.HasPrefix(string(p.raw), first+"\n") && !strings.HasPrefix(string(p.raw), lines[p.line-1]+"\n") {
			t.Errorf("%q: document %d is said to start on line %d, %q", data, i, p.line, lines[p.line-1])
		}
	}
}

const header = "apiVersion: parley.io/v1alpha1\nkind: ConversationRules\n"

// TestEveryMistakeWithItsPosition: mistakes of every document of a file are reported at once,
// at FILE:LINE:COLUMN (in the file, after --- and inside kind: List too), with the field path
// and list indexes, and a hint where one helps.
func TestEveryMistakeWithItsPosition(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []string
	}{{
		name: "every mistake of every document, positions in the file",
		in: header + `metadata: {name: ok}
spec: {operation: {port: 1}}
---
` + header + `metadata: {name: bad}
spec:
  operation:
    prot: 7000
    interactionTimeout: 30
    maxInputSize: "2048"
  conversation:
    rules:
    - {id: 1, mode: Sync, regex: x}
    - id: 2
      captures:
      - {regex: "(.*)", variabel: user}
      trigger: [{ruleID: 1, delay: 1m}, {ruleID: 1, delay: "soon"}]
---
` + header + `spec: {operation: {port: [1]}}
`,
		want: []string{
			`f.yaml:11:5: spec.operation.prot: unknown field (did you mean port?)`,
			`f.yaml:12:25: spec.operation.interactionTimeout: want a duration such as "30s", got the number 30; write 30s (a duration needs a unit: ms, s, m or h)`,
			`f.yaml:13:19: spec.operation.maxInputSize: want an integer, got the string "2048"; remove the quotes`,
			`f.yaml:19:25: spec.conversation.rules[1].captures[0].variabel: unknown field (did you mean variable?)`,
			`f.yaml:20:60: spec.conversation.rules[1].trigger[1].delay: "soon" is not a duration: want a number with a unit (ms, s, m, h), such as "30s", "500ms" or "1m30s"`,
			`f.yaml:24:26: spec.operation.port: want an integer, got a list; a value that starts with "[" is a YAML list: quote it`,
		},
	}, {
		name: "Lope field names point to parley import",
		in: header + `spec:
  operation: {port: 1, interaction_timeout: 30}
  conversation:
    rules:
    - {id: 1, mode: Sync, regex: x, ending_rule: yes}
`,
		want: []string{
			"f.yaml:4:24: spec.operation.interaction_timeout: unknown field (did you mean interactionTimeout?); snake_case names are Lope's, ConversationRules are camelCase: convert a Lope rules file with `parley import FILE`",
			"f.yaml:7:37: spec.conversation.rules[0].ending_rule: unknown field; snake_case names are Lope's, ConversationRules are camelCase: convert a Lope rules file with `parley import FILE`",
		},
	}, {
		name: "YAML 1.1 words in string fields: a variable name, a default, an operation input, a label",
		in: header + `metadata:
  name: r
  labels: {decoy: yes}
spec:
  operation: {port: 1}
  memory:
    connection:
    - {name: n, type: int}
    - {name: answer, default: Off}
  conversation:
    rules:
    - id: 1
      mode: Sync
      regex: x
      operation: {name: STR_CONCAT, inputs: [a, "no", N], outputs: [answer]}
`,
		want: []string{
			`f.yaml:5:19: metadata.labels[decoy]: unquoted yes is the boolean true in YAML 1.1 (as kubectl reads it), so this string field would be "true": quote it ("yes") to keep the word, or write true`,
			`f.yaml:10:14: spec.memory.connection[0].name: unquoted n is the boolean false in YAML 1.1 (as kubectl reads it), so this string field would be "false": quote it ("n") to keep the word, or write false`,
			`f.yaml:11:31: spec.memory.connection[1].default: unquoted Off is the boolean false in YAML 1.1 (as kubectl reads it), so this string field would be "false": quote it ("Off") to keep the word, or write false`,
			`f.yaml:17:55: spec.conversation.rules[0].operation.inputs[2]: unquoted N is the boolean false in YAML 1.1 (as kubectl reads it), so this string field would be "false": quote it ("N") to keep the word, or write false`,
		},
	}, {
		name: "an unquoted template is a mapping, a list where a mapping is wanted",
		in: header + `spec:
  operation: {port: 1}
  conversation:
    greetings: {value: {{user}}}
    rules:
      id: 1
`,
		want: []string{
			`f.yaml:6:24: spec.conversation.greetings.value: want a string, got a mapping; a value that starts with "{" is a YAML mapping: quote it`,
			`f.yaml:8:7: spec.conversation.rules: want a list, got a mapping; write [{...}] or one "- " per item`,
		},
	}, {
		name: "items of a List, at their lines",
		in: `apiVersion: v1
kind: List
items:
- ` + strings.ReplaceAll(header, "\n", "\n  ") + `spec: {operation: {port: 1}}
- ` + strings.ReplaceAll(header, "\n", "\n  ") + `spec: {operation: {port: 1, ipv6: "yes"}}
- ` + strings.ReplaceAll(header, "\n", "\n  ") + `spec: {operation: {port: 1, mode: on}}
`,
		want: []string{
			`f.yaml:9:37: spec.operation.ipv6: want true or false, got the string "yes"`,
			`f.yaml:12:37: spec.operation.mode: unquoted on is the boolean true in YAML 1.1 (as kubectl reads it), so this string field would be "true": quote it ("on") to keep the word, or write true`,
		},
	}, {
		name: "a key given twice, a number out of range",
		in: header + `spec:
  operation: {port: 1, port: 2}
  conversation: {rules: [{id: 3000000000, mode: Sync}]}
`,
		want: []string{
			`f.yaml:4:24: spec.operation.port: given twice (first on line 4)`,
			`f.yaml:5:31: spec.conversation.rules[0].id: 3000000000 is out of range: want an integer from -2147483648 to 2147483647`,
		},
	}, {
		name: "YAML syntax, in the second document",
		in:   header + "spec: {operation: {port: 1}}\n---\n" + header + "spec:\n  operation: {port: 1\n  memory: {}\n",
		want: []string{`f.yaml:8: invalid YAML: did not find expected ',' or '}'`},
	}, {
		name: "apiVersion",
		in:   "apiVersion: parley.io/v1\nkind: ConversationRules\nspec: {}\n---\nkind: ConversationRules\nspec: {}\n",
		want: []string{
			`f.yaml:1:13: apiVersion: "parley.io/v1": want parley.io/v1alpha1`,
			`f.yaml:5:1: apiVersion: missing: want parley.io/v1alpha1`,
		},
	}, {
		name: "a separator with more than a comment after it",
		in:   header + "spec: {operation: {port: 1}}\n--- {}\n",
		want: []string{`f.yaml:4: invalid document separator "--- {}": only a comment may follow ---`},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Read("f.yaml", strings.NewReader(tc.in))
			if err == nil {
				t.Fatal("accepted")
			}
			if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestWhatStillReads: YAML 1.1 words where they mean what they say (booleans), quoted words,
// and scalars a string field takes as kubectl gives them (numbers, true) read as before.
func TestWhatStillReads(t *testing.T) {
	in := header + `metadata: {name: "n", labels: {decoy: "yes"}}
spec:
  enabled: yes
  operation: {port: 1, ipv6: off, alertAll: No, onlyFirstHit: TRUE}
  memory:
    connection:
    - {name: "y", type: bool, default: true}
    - {name: "count", type: int, default: 3}
    - {name: ratio, type: float, default: 1.50}
    - {name: word, default: !!str no}
  conversation:
    rules:
    - {id: 1, mode: Sync, regex: "x", operation: {name: STR_CONCAT, inputs: [a, 'off', 1], outputs: [word]}}
`
	docs, _, err := Read("f.yaml", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	sameAsBefore(t, "f.yaml", []byte(in))
	s := docs[0].Rules.Spec
	if v := s.Memory.Connection; v[0].Name != "y" || v[0].Default != "true" || v[1].Default != "3" || v[2].Default != "1.5" || v[3].Default != "no" {
		t.Errorf("memory: %+v", v)
	}
	if in := s.Conversation.Rules[0].Operation.Inputs; !reflect.DeepEqual(in, []string{"a", "off", "1"}) {
		t.Errorf("inputs: %q", in)
	}
	if !*s.Enabled || s.Operation.IPv6 || s.Operation.AlertAll || !s.Operation.OnlyFirstHit {
		t.Errorf("booleans: %+v", s)
	}
}

// TestLopeFileSkippedWithAHint: a Lope rules file has no kind; the note says to import it.
func TestLopeFileSkippedWithAHint(t *testing.T) {
	_, skipped, err := Read("rules.yml", strings.NewReader("name: x\nenable_use: yes\noperation: {port: 1}\n"))
	if err != nil || len(skipped) != 1 || !strings.Contains(skipped[0], "this looks like a Lope rules file; convert it with `parley import rules.yml`") {
		t.Errorf("err %v, skipped %q", err, skipped)
	}
}

// TestHostileYAMLIsBounded: aliases that expand exponentially, an alias inside its own anchor,
// a merge of itself, deep nesting: refused quickly, without a panic.
func TestHostileYAMLIsBounded(t *testing.T) {
	// Four nested lists of structs, each of 200 aliases of the first: 1.6e9 conditions.
	many := func(anchor, first string) string {
		return "[&" + anchor + " " + first + strings.Repeat(", *"+anchor, 199) + "]"
	}
	laughs := header + "spec:\n  operation: {port: 1}\n  conversation:\n    groups: " +
		many("g", "{id: g, rules: "+many("r", "{id: 1, mode: Sync, asyncSwitch: {options: "+
			many("o", "{conditions: "+many("c", `{variable: "n"}`)+"}")+"}}")+"}") + "\n"
	laughsInStrings := header + "spec:\n  operation: {port: 1}\n  description: &a0 [x, x]\n"
	for i := 1; i <= 30; i++ {
		laughsInStrings += "  group: &a" + strconv.Itoa(i) + " [*a" + strconv.Itoa(i-1) + ", *a" + strconv.Itoa(i-1) + "]\n"
	}
	for name, in := range map[string]string{
		"billion laughs":                 laughs,
		"billion laughs, repeated keys":  laughsInStrings,
		"alias inside its anchor":        header + "spec: &s {operation: {port: 1}, conversation: {rules: [*s]}}\n",
		"merge of itself":                header + "spec: &s\n  <<: *s\n  operation: {port: 1}\n",
		"deep nesting":                   header + "spec: " + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "\n",
		"deep nesting in a known field":  header + "spec: {operation: {port: 1}, conversation: {rules: " + strings.Repeat("[", 9000) + strings.Repeat("]", 9000) + "}}\n",
		"Lists in Lists":                 strings.Repeat("{kind: List, items: [", 50) + strings.Repeat("]}", 50) + "\n",
		"a mapping as key, as a comment": header + "spec: {operation: {port: 1}, {a: b}: 1}\n",
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, _, err := Read("f.yaml", strings.NewReader(in))
			if err == nil {
				t.Error("accepted")
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			sameAsBefore(t, "f.yaml", []byte(in))
		})
	}
}
