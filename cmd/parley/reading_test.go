package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Two files: the first holds a valid document and one with a mistake of every kind the
// reader names; the second, a kind: List whose item names a variable n (YAML 1.1: false).
const (
	readingFirst = `apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata: {name: fine}
spec: {operation: {port: 7000}}
---
apiVersion: parley.io/v1alpha1
kind: ConversationRules
metadata: {name: typos}
spec:
  operation:
    prot: 7000
    interactionTimeout: 30
  conversation:
    greetings: {value: {{user}}}
    rules:
    - {id: 1, mode: Sync, regex: "QUIT", ending_rule: yes}
    - id: 2
      mode: Sync
      regex: "x"
      captures: [{regex: "(.*)", variabel: user}]
`
	readingSecond = `apiVersion: v1
kind: List
items:
- apiVersion: parley.io/v1alpha1
  kind: ConversationRules
  metadata: {name: listed}
  spec:
    operation: {port: 7001}
    memory:
      connection: [{name: n, type: int}]
`
)

// TestReadingMistakesAllAtOnceWithPositions: check and run print every reading mistake of
// every document of every file, as FILE:LINE:COLUMN: PATH: MESSAGE with a hint, and exit 1;
// check still validates the documents without a mistake.
func TestReadingMistakesAllAtOnceWithPositions(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.yaml"), filepath.Join(dir, "second.yaml")
	for path, content := range map[string]string{first: readingFirst, second: readingSecond} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		first + `:11:5: spec.operation.prot: unknown field (did you mean port?)`,
		first + `:12:25: spec.operation.interactionTimeout: want a duration such as "30s", got the number 30; write 30s (a duration needs a unit: ms, s, m or h)`,
		first + `:14:24: spec.conversation.greetings.value: want a string, got a mapping; a value that starts with "{" is a YAML mapping: quote it`,
		first + ":16:42: spec.conversation.rules[0].ending_rule: unknown field; snake_case names are Lope's, ConversationRules are camelCase: convert a Lope rules file with `parley import FILE`",
		first + `:20:34: spec.conversation.rules[1].captures[0].variabel: unknown field (did you mean variable?)`,
		second + `:10:27: spec.memory.connection[0].name: unquoted n is the boolean false in YAML 1.1 (as kubectl reads it), so this string field would be "false": quote it ("n") to keep the word, or write false`,
	}

	cmd := exec.Command(parleyBinary, "check", first, second)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("check: exit %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	wantCheck := append(append([]string{}, want[:5]...), first+"#1: fine: valid (0 rules, Server TCP :7000)", want[5],
		"parley: 2 invalid rules document(s)")
	if strings.Join(lines, "\n") != strings.Join(wantCheck, "\n") {
		t.Errorf("check printed\n%s\nwant\n%s", out, strings.Join(wantCheck, "\n"))
	}

	out, err = exec.Command(parleyBinary, "run", "--port", "0", first, second).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("run: exit %v\n%s", err, out)
	}
	for _, w := range append(want, "parley: 2 invalid rules document(s)") {
		if !strings.Contains(string(out), w) {
			t.Errorf("run: missing %q in\n%s", w, out)
		}
	}
	if strings.Contains(string(out), "listening") {
		t.Errorf("run served rules with mistakes:\n%s", out)
	}
}

// TestCheckQuotedWordsRead: the same word quoted is a name like any other.
func TestCheckQuotedWordsRead(t *testing.T) {
	fixed := strings.Replace(readingSecond, "{name: n,", `{name: "n",`, 1)
	out, err := exec.Command(parleyBinary, "check", writeFile(t, fixed)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "listed: valid") {
		t.Errorf("err %v, output:\n%s", err, out)
	}
}
