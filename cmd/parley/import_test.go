package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// lopeData is the importer's testdata: Lope rules files with golden outputs.
const lopeData = "../../internal/lope/testdata/"

// parley runs the built binary and returns stdout, stderr and the exit code.
func parley(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(parleyBinary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// checkOutput runs parley check on YAML and wants every document valid.
func checkOutput(t *testing.T, yamlText string, docs int) {
	t.Helper()
	out, stderr, code := parley(t, "check", "-f", writeFile(t, yamlText))
	if code != 0 || strings.Count(out, ": valid (") != docs {
		t.Errorf("parley check (exit %d) wants %d valid documents:\n%s%s", code, docs, out, stderr)
	}
}

func TestImportClean(t *testing.T) {
	stdout, stderr, code := parley(t, "import", lopeData+"tcp_server.yml", lopeData+"async_hybrid.yml")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	if !strings.HasPrefix(stdout, "---\napiVersion: parley.io/v1alpha1\nkind: ConversationRules\n") || strings.Count(stdout, "\n---\n") != 1 {
		t.Errorf("stdout is not a two-document stream:\n%s", stdout)
	}
	for _, unwanted := range []string{"status:", "creationTimestamp", "tls: {}", "memory: {}"} {
		if strings.Contains(stdout, unwanted) {
			t.Errorf("output holds %q", unwanted)
		}
	}
	// Notes are printed, as FILE: PATH: note: message, without failing the import.
	if !strings.Contains(stderr, lopeData+"tcp_server.yml: conversation.custom_rules.rules[2].alert: note: carried as alert: true") {
		t.Errorf("stderr:\n%s", stderr)
	}
	checkOutput(t, stdout, 2)
	golden, err := os.ReadFile(lopeData + "tcp_server.golden.yaml")
	if err != nil || !strings.Contains(stdout, string(golden)) {
		t.Errorf("stdout does not hold the golden output of tcp_server.yml (%v)", err)
	}
}

func TestImportDroppedExitsTwoAndStillWrites(t *testing.T) {
	stdout, stderr, code := parley(t, "import", lopeData+"dropped.yml")
	if code != 2 {
		t.Fatalf("exit %d, want 2:\n%s", code, stderr)
	}
	for _, want := range []string{
		lopeData + "dropped.yml: conversation.custom_rules.rules[0].regex: dropped: RE2 cannot run `^(?!admin)\\w+`: lookarounds",
		lopeData + "dropped.yml: conversation.custom_rules.rules[1].trigger[0].rule_id: dropped: rule 1 was left out",
		lopeData + "dropped.yml: operation.custom_function_preprocessor: dropped: Python function",
		lopeData + "dropped.yml: author: dropped: unknown Lope field",
		"could not be carried over",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	checkOutput(t, stdout, 1)
}

func TestImportBadInputExitsOne(t *testing.T) {
	_, stderr, code := parley(t, "import", filepath.Join(t.TempDir(), "absent.yml"))
	if code != 1 || !strings.Contains(stderr, "absent.yml") {
		t.Errorf("missing file: exit %d:\n%s", code, stderr)
	}
	bad := writeFile(t, "operation: {port: 1, transport_protocol: SCTP}\n")
	stdout, stderr, code := parley(t, "import", lopeData+"udp_client.yml", bad)
	if code != 1 || !strings.Contains(stderr, bad+": operation.transport_protocol: \"SCTP\" is not TCP or UDP") {
		t.Errorf("bad file: exit %d:\n%s", code, stderr)
	}
	// The good file is still converted.
	checkOutput(t, stdout, 1)
	_, stderr, code = parley(t, "import", lopeData+"cycle/main.yml")
	if code != 1 || !strings.Contains(stderr, "import cycle: b.yml -> c.yml -> b.yml") {
		t.Errorf("cycle: exit %d:\n%s", code, stderr)
	}
	if _, _, code := parley(t, "import"); code != 1 {
		t.Errorf("no arguments: exit %d", code)
	}
}

// TestImportLopeRoot: --lope-root is where is_relative imports are read from, as Lope reads
// them from its working directory; without it a Lope-style import is not found, and
// the error names the file looked for.
func TestImportLopeRoot(t *testing.T) {
	root := t.TempDir()
	for name, text := range map[string]string{
		"conv_rules/main.yml": "enable_use: yes\noperation: {port: 7}\nmemory_variables:\n    import: [{path: /conv_rules/a.yml, is_relative: yes}]\n",
		"conv_rules/a.yml":    "connection_level: [{name: a}]\nimport: [{path: /conv_rules/b.yml, is_relative: yes}]\n",
		"conv_rules/b.yml":    "connection_level: [{name: b}]\n",
	} {
		if err := os.MkdirAll(filepath.Join(root, "conv_rules"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	main := filepath.Join(root, "conv_rules", "main.yml")
	_, stderr, code := parley(t, "import", main)
	if code != 1 || !strings.Contains(stderr, "memory_variables.import[0]: no file "+filepath.Join(root, "conv_rules", "conv_rules", "a.yml")) || !strings.Contains(stderr, "--lope-root") {
		t.Errorf("without --lope-root: exit %d:\n%s", code, stderr)
	}
	stdout, stderr, code := parley(t, "import", "--lope-root", root, main)
	if code != 0 || !strings.Contains(stdout, "name: a\n") || !strings.Contains(stdout, "name: b\n") {
		t.Errorf("with --lope-root: exit %d:\n%s%s", code, stdout, stderr)
	}
	checkOutput(t, stdout, 1)
	if _, stderr, code := parley(t, "import", "--lope-root", filepath.Join(root, "absent"), main); code != 1 || !strings.Contains(stderr, "not a directory") {
		t.Errorf("absent root: exit %d:\n%s", code, stderr)
	}
}

func TestImportToDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	other := filepath.Join(t.TempDir(), "tcp_server.yml")
	src, err := os.ReadFile(lopeData + "tcp_server.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, src, 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := parley(t, "import", "-o", dir, lopeData+"tcp_server.yml", other, lopeData+"imports_main.yml")
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q:\n%s", code, stdout, stderr)
	}
	for _, name := range []string{"tcp-server.yaml", "tcp-server-2.yaml", "imports-main.yaml"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		checkOutput(t, string(b), 1)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "tcp-server-2.yaml")); !strings.Contains(string(b), "name: tcp-server-2\n") {
		t.Errorf("the second tcp_server.yml must get its own name:\n%s", b)
	}
}

// TestImportWritesTheDocsOrder: fields come out in the order of docs/rules.md (its
// reference tables and examples, the API types' order), not alphabetically: apiVersion
// first, the operation before memory and conversation, id first in a rule, name first in a
// variable.
func TestImportWritesTheDocsOrder(t *testing.T) {
	stdout, stderr, code := parley(t, "import", lopeData+"session.yml")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	at := 0
	for _, want := range []string{
		"---\napiVersion: parley.io/v1alpha1\nkind: ConversationRules\nmetadata:\n  name: session\nspec:\n",
		"  description: session api\n  group: web\n  enabled: true\n",
		"  operation:\n    mode: Server\n    transport: TCP\n    port: 8443\n    identifyBy: IP\n    tls:\n",
		"    session:\n      enabled: true\n      key: SESSIONID\n",
		"  memory:\n    connection:\n    - name: token\n      type: string\n      generate:\n        length: 6\n",
		"  conversation:\n    default:\n",
		"    rules:\n    - id: 1\n      mode: Sync\n      regex: ^POST /login\n      response: ",
	} {
		i := strings.Index(stdout[at:], want)
		if i < 0 {
			t.Fatalf("after byte %d, stdout lacks %q:\n%s", at, want, stdout)
		}
		at += i + len(want)
	}
	checkOutput(t, stdout, 1)
}

// TestImportDropsEmptyGroups: a group with no rules, or none left, is not written (as
// `rules: []`) but left out with a note.
func TestImportDropsEmptyGroups(t *testing.T) {
	stdout, stderr, code := parley(t, "import", lopeData+"empty_groups.yml")
	if code != 2 { // groups[2]'s rule has no regex: dropped
		t.Fatalf("exit %d, want 2:\n%s", code, stderr)
	}
	_, groups, _ := strings.Cut(stdout, "\n    groups:\n")
	if strings.Contains(stdout, "rules: []") || !strings.HasPrefix(groups, "    - id: kept\n") || strings.Count(groups, "\n    - ") != 0 {
		t.Errorf("only the group with a rule must be written, under its own id:\n%s", stdout)
	}
	for _, want := range []string{
		lopeData + "empty_groups.yml: conversation.custom_rules.groups[0]: note: no rules; an empty group does nothing",
		lopeData + "empty_groups.yml: conversation.custom_rules.groups[2]: note: none of its rules could be carried over",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	checkOutput(t, stdout, 1)
}

// TestImportNamesTheFileOnce: every line on stderr but the closing summary is one message
// that starts with the file it is about and names it only there, whatever went wrong: a
// missing or empty file, one that is not YAML, values of the wrong type (one line for all),
// or what a conversion dropped or noted.
func TestImportNamesTheFileOnce(t *testing.T) {
	dir := t.TempDir()
	inputs := []string{filepath.Join(dir, "absent.yml"), lopeData + "dropped.yml", lopeData + "tcp_server.yml"}
	for name, text := range map[string]string{
		"empty.yml":   "\n",
		"notyaml.yml": "operation: [\n",
		"types.yml":   "enable_use: yes\noperation:\n  port: abc\n  max_input_size: x\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, p)
	}
	_, stderr, code := parley(t, append([]string{"import"}, inputs...)...)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, stderr)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		if strings.HasPrefix(line, "parley: ") {
			continue
		}
		file := ""
		for _, f := range inputs {
			if strings.HasPrefix(line, f+": ") {
				file = f
			}
		}
		if file == "" {
			t.Errorf("a line that names no input first: %q", line)
			continue
		}
		seen[file] = true
		if n := strings.Count(line, filepath.Base(file)); n != 1 {
			t.Errorf("names %s %d times: %q", filepath.Base(file), n, line)
		}
	}
	if len(seen) != len(inputs) {
		t.Errorf("messages for %d of %d inputs:\n%s", len(seen), len(inputs), stderr)
	}
	for _, want := range []string{
		filepath.Join(dir, "absent.yml") + ": no such file or directory\n",
		filepath.Join(dir, "empty.yml") + ": empty file\n",
		filepath.Join(dir, "types.yml") + ": line 3: cannot unmarshal !!str `abc` into float64; line 4: ",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

// TestImportRecognisesConversationRules: a file that is already ConversationRules is said
// to be so, once, and left out of the output without failing the import; another
// Kubernetes manifest is an input that could not be converted.
func TestImportRecognisesConversationRules(t *testing.T) {
	const example = "../../examples/redis.yaml"
	stdout, stderr, code := parley(t, "import", example, lopeData+"tcp_server.yml")
	if code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", code, stderr)
	}
	want := example + ": already ConversationRules, nothing to convert (parley check validates it; parley run and kubectl apply take it as it is)\n"
	if !strings.HasPrefix(stderr, want) || strings.Count(stderr, "redis.yaml") != 1 {
		t.Errorf("stderr:\n%s", stderr)
	}
	golden, err := os.ReadFile(lopeData + "tcp_server.golden.yaml")
	if err != nil || stdout != "---\n"+string(golden) {
		t.Errorf("stdout must be the converted tcp_server.yml alone (%v):\n%s", err, stdout)
	}

	dir := filepath.Join(t.TempDir(), "out")
	stdout, stderr, code = parley(t, "import", "-o", dir, example)
	if entries, _ := os.ReadDir(dir); code != 0 || stdout != "" || stderr != want || len(entries) != 0 {
		t.Errorf("-o: exit %d, %d files written, stdout %q:\n%s", code, len(entries), stdout, stderr)
	}

	connector := writeFile(t, "apiVersion: parley.io/v1alpha1\nkind: ExternalConnector\nmetadata: {name: c}\nspec: {rules: r}\n")
	_, stderr, code = parley(t, "import", connector)
	if code != 1 || !strings.HasPrefix(stderr, connector+": a Kubernetes manifest (kind ExternalConnector), not a Lope rules file\n") {
		t.Errorf("an ExternalConnector: exit %d:\n%s", code, stderr)
	}
}
