// Package rulesfile reads ConversationRules from YAML (or JSON) as `kubectl apply -f` takes
// them: files, directories, standard input ("-"), several documents per file, `kind: List`
// (what `kubectl get -o yaml` prints), strict field names, apiVersion and kind checked; and,
// for `parley run` and `parley check`, the ActivitySinks and Secrets beside them (ReadAll).
package rulesfile

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	yaml3 "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
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

// Files are the documents of paths that `parley run` and `parley check` take: the rules,
// the ActivitySinks that deliver their activities, and the Secrets those name.
type Files struct {
	Rules   []Document
	Sinks   []SinkDocument
	Secrets []SecretDocument
	// Skipped says which documents of other kinds were skipped, and why.
	Skipped []string
}

// SinkDocument is one ActivitySink read from a file.
type SinkDocument struct {
	Source string
	Sink   v1alpha1.ActivitySink
}

// SecretDocument is one Secret read from a file, its stringData merged into its data as the
// API server does.
type SecretDocument struct {
	Source string
	Secret corev1.Secret
}

func (f *Files) add(g Files) {
	f.Rules = append(f.Rules, g.Rules...)
	f.Sinks = append(f.Sinks, g.Sinks...)
	f.Secrets = append(f.Secrets, g.Secrets...)
	f.Skipped = append(f.Skipped, g.Skipped...)
}

// skippedAll is Skipped with the ActivitySinks and Secrets, for readers of rules alone.
func (f *Files) skippedAll() []string {
	out := f.Skipped
	for _, s := range f.Sinks {
		out = append(out, fmt.Sprintf("%s: kind %q is not %s", s.Source, "ActivitySink", Kind))
	}
	for _, s := range f.Secrets {
		out = append(out, fmt.Sprintf("%s: kind %q is not %s", s.Source, "Secret", Kind))
	}
	return out
}

// ReadAll reads every document of paths, in order: a file, a directory (its .yaml, .yml
// and .json files in name order, not its subdirectories, as kubectl without -R), or Stdin,
// read from stdin. It keeps the rules, ActivitySinks and Secrets; documents of other kinds
// are skipped, and Files.Skipped says which and why.
//
// Every mistake of every document of every path is reported, as Errors; the documents read
// without one are returned beside them.
func ReadAll(paths []string, stdin io.Reader) (Files, error) {
	var all Files
	var errs Errors
	for _, path := range paths {
		var f Files
		var err error
		switch {
		case path == Stdin:
			f, err = readAll("<stdin>", stdin)
		default:
			f, err = readPath(path)
		}
		all.add(f)
		errs = errs.add(err)
	}
	return all, errs.err()
}

func readPath(path string) (Files, error) {
	info, err := os.Stat(path)
	if err != nil {
		return Files{}, err
	}
	if !info.IsDir() {
		return readFile(path)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return Files{}, err
	}
	var all Files
	var errs Errors
	found := false
	for _, e := range entries { // ReadDir sorts by name
		if e.IsDir() || !slices.Contains([]string{".yaml", ".yml", ".json"}, strings.ToLower(filepath.Ext(e.Name()))) {
			continue
		}
		found = true
		f, err := readFile(filepath.Join(path, e.Name()))
		all.add(f)
		errs = errs.add(err)
	}
	if !found {
		return Files{}, fmt.Errorf("%s: no .yaml, .yml or .json file in the directory", path)
	}
	return all, errs.err()
}

func readFile(path string) (Files, error) {
	f, err := os.Open(path)
	if err != nil {
		return Files{}, err
	}
	defer f.Close()
	return readAll(path, f)
}

// Read reads every ConversationRules document of r; name is used in messages. Documents of
// other kinds (an ExternalConnector kept beside its rules, ActivitySinks, Secrets) are
// skipped; skipped says which and why.
//
// Documents are decoded exactly as kubectl decodes them (sigs.k8s.io/yaml: YAML 1.1, field
// names strict). A document that does not decode is read again with its positions, to report
// each of its mistakes at FILE:LINE:COLUMN with its field path. A document that decodes but
// gives a string field an unquoted YAML 1.1 boolean word (n, yes, off, ...) is refused too:
// the field would silently be "true" or "false".
func Read(name string, r io.Reader) (docs []Document, skipped []string, err error) {
	f, err := readAll(name, r)
	return f.Rules, f.skippedAll(), err
}

func readAll(name string, r io.Reader) (Files, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return Files{}, Errors{fmt.Errorf("%s: %w", name, err)}
	}
	parts, splitErr := split(data)
	rd := &reader{file: name}
	for i, p := range parts {
		if len(bytes.TrimSpace(p.raw)) == 0 || isOnlyComments(p.raw) {
			continue
		}
		rd.offset = p.line - 1
		rd.decode(fmt.Sprintf("%s#%d", name, i+1), p.raw, bytes.Count(p.raw, []byte("\n")), parseNode(p.raw), 0)
	}
	if splitErr != nil {
		rd.errs = append(rd.errs, &Error{File: name, Line: splitErr.line, Source: fmt.Sprintf("%s#%d", name, len(parts)+1), Message: splitErr.message})
	}
	return rd.files, rd.errs.err()
}

// add appends err, or each of its Errors.
func (es Errors) add(err error) Errors {
	var more Errors
	switch {
	case err == nil:
		return es
	case errors.As(err, &more):
		return append(es, more...)
	}
	return append(es, err)
}

func (es Errors) err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// part is one document of a stream and the file line it starts on.
type part struct {
	raw  []byte
	line int
}

type splitError struct {
	line    int
	message string
}

// split cuts a stream into documents exactly as kubectl's reader
// (k8s.io/apimachinery/pkg/util/yaml.YAMLReader) does, and says on which line each starts: a
// line that starts with "---" ends the document before it and is dropped, or, with no document
// before it, is kept as the first line of the next; lines end with "\n" or "\r\n". A separator
// followed by anything but a comment stops the stream.
func split(data []byte) ([]part, *splitError) {
	var parts []part
	var buf []byte
	first := 0
	for line, rest := 1, data; len(rest) > 0; line++ {
		l, next, found := bytes.Cut(rest, []byte("\n"))
		if found {
			l = bytes.TrimSuffix(l, []byte("\r"))
		}
		rest = next
		if bytes.HasPrefix(l, []byte(separator)) {
			if after := strings.TrimSpace(string(l[len(separator):])); after != "" && after[0] != '#' {
				return parts, &splitError{line, fmt.Sprintf("invalid document separator %q: only a comment may follow ---", string(l))}
			}
			if len(buf) > 0 {
				parts = append(parts, part{buf, first})
				buf = nil
				continue
			}
		}
		if len(buf) == 0 {
			first = line
		}
		buf = append(append(buf, l...), '\n')
	}
	if len(buf) > 0 {
		parts = append(parts, part{buf, first})
	}
	return parts, nil
}

const separator = "---"

// parseNode parses a document with its positions and returns its top node, or nil when it
// cannot.
func parseNode(raw []byte) (n *yaml3.Node) {
	defer func() {
		if recover() != nil {
			n = nil
		}
	}()
	var doc yaml3.Node
	if err := yaml3.Unmarshal(raw, &doc); err != nil || doc.Kind != yaml3.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	return doc.Content[0]
}

// reader gathers the documents of one file and the mistakes found in them.
type reader struct {
	file   string
	offset int // of the document being read: its first line in the file, minus one
	files  Files
	errs   Errors
}

// maxListDepth bounds kind: List inside kind: List.
const maxListDepth = 8

// decode reads one document: a ConversationRules, a list of objects (kind List, or
// ConversationRulesList), or another kind, skipped. raw is the document as written, or (an
// item of a List) as JSON; lines counts raw's lines when they are the file's from the
// document's first, else is 0; node is the same document parsed with positions (nil when it
// could not be).
func (rd *reader) decode(source string, raw []byte, lines int, node *yaml3.Node, depth int) {
	var meta struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
	}
	if err := yaml.Unmarshal(raw, &meta); err != nil {
		// Not even apiVersion and kind could be read: YAML the decoder cannot take (a
		// mapping as a key, as an unquoted {{template}} is), or a kind that is not a string.
		if k := topField(node, "kind"); k != nil && k.Kind == yaml3.ScalarNode && k.Value == Kind {
			rd.refuse(source, node, true, err, lines, reflect.TypeFor[v1alpha1.ConversationRules]())
		} else {
			rd.refuse(source, node, false, err, lines, reflect.TypeOf(meta))
		}
		return
	}
	switch meta.Kind {
	case Kind:
	case "ActivitySink":
		if rd.apiVersion(source, node, meta.APIVersion, v1alpha1.GroupVersion.String()) {
			doc := SinkDocument{Source: source}
			if rd.strict(source, raw, lines, node, &doc.Sink) {
				rd.files.Sinks = append(rd.files.Sinks, doc)
			}
		}
		return
	case "Secret":
		if rd.apiVersion(source, node, meta.APIVersion, "v1") {
			doc := SecretDocument{Source: source}
			if rd.strict(source, raw, lines, node, &doc.Secret) {
				sec := &doc.Secret
				for k, v := range sec.StringData {
					if sec.Data == nil {
						sec.Data = map[string][]byte{}
					}
					sec.Data[k] = []byte(v)
				}
				sec.StringData = nil
				rd.files.Secrets = append(rd.files.Secrets, doc)
			}
		}
		return
	case "List", Kind + "List":
		if depth >= maxListDepth {
			rd.fail(source, node, "", fmt.Sprintf("a List nested in %d Lists: flatten it", depth))
			return
		}
		items := topField(node, "items")
		for i, item := range meta.Items {
			var in *yaml3.Node
			if items != nil && items.Kind == yaml3.SequenceNode && i < len(items.Content) {
				in = items.Content[i]
				for in.Kind == yaml3.AliasNode && in.Alias != nil {
					in = in.Alias
				}
			}
			rd.decode(fmt.Sprintf("%s/items[%d]", source, i), item, 0, in, depth+1)
		}
		return
	default:
		note := fmt.Sprintf("%s: kind %q is not %s", source, meta.Kind, Kind)
		if meta.Kind == "" && meta.APIVersion == "" && looksLikeLope(node) {
			note += fmt.Sprintf(": this looks like a Lope rules file; convert it with `parley import %s`", rd.file)
		}
		rd.files.Skipped = append(rd.files.Skipped, note)
		return
	}
	if !rd.apiVersion(source, node, meta.APIVersion, v1alpha1.GroupVersion.String()) {
		return
	}
	doc := Document{Source: source}
	if !rd.strict(source, raw, lines, node, &doc.Rules) {
		return
	}
	if node != nil {
		w := newWalker(node, rd.offset, true)
		w.check(node, reflect.TypeOf(doc.Rules))
		if words := slices.DeleteFunc(w.findings, func(f finding) bool { return !f.quoteIt }); len(words) > 0 {
			rd.report(source, words)
			return
		}
	}
	rd.files.Rules = append(rd.files.Rules, doc)
}

// apiVersion checks a document's apiVersion is want, reporting it when not.
func (rd *reader) apiVersion(source string, node *yaml3.Node, got, want string) bool {
	if got == want {
		return true
	}
	at, msg := topField(node, "apiVersion"), fmt.Sprintf("%q: want %s", got, want)
	if got == "" {
		at, msg = node, "missing: want "+want
	}
	rd.fail(source, at, "apiVersion", msg)
	return false
}

// strict decodes raw into obj with strict field names, reporting every mistake with its
// position and field path.
func (rd *reader) strict(source string, raw []byte, lines int, node *yaml3.Node, obj any) bool {
	if err := yaml.UnmarshalStrict(raw, obj); err != nil {
		rd.refuse(source, node, true, err, lines, reflect.TypeOf(obj).Elem())
		return false
	}
	return true
}

// refuse reports a document the decoder refused: every mistake the walk against t finds, or,
// when it finds none it is sure of, the decoder's own error.
func (rd *reader) refuse(source string, node *yaml3.Node, strict bool, err error, lines int, t reflect.Type) {
	var found []finding
	complete := false
	if node != nil {
		w := newWalker(node, rd.offset, strict)
		w.check(node, t)
		found, complete = w.findings, !w.aborted
	}
	rd.report(source, found)
	if !complete || !slices.ContainsFunc(found, func(f finding) bool { return !f.quoteIt }) {
		rd.decoderError(source, node, err, lines)
	}
}

func (rd *reader) report(source string, found []finding) {
	slices.SortStableFunc(found, func(a, b finding) int {
		return cmp.Or(cmp.Compare(a.line, b.line), cmp.Compare(a.column, b.column))
	})
	for _, f := range found {
		rd.errs = append(rd.errs, &Error{File: rd.file, Line: f.line, Column: f.column, Source: source, Path: f.path, Message: f.message, quoteIt: f.quoteIt})
	}
}

func (rd *reader) fail(source string, at *yaml3.Node, path, message string) {
	e := &Error{File: rd.file, Source: source, Path: path, Message: message}
	if at != nil {
		e.Line, e.Column = at.Line+rd.offset, at.Column
	}
	rd.errs = append(rd.errs, e)
}

var yamlLine = regexp.MustCompile(`^\s*line (\d+): `)

// decoderError reports the decoder's error without its Go wording, at the line it names when
// raw's lines are the file's, else at the document.
func (rd *reader) decoderError(source string, node *yaml3.Node, err error, lines int) {
	msg := err.Error()
	for _, prefix := range []string{"error converting YAML to JSON: ", "error unmarshaling JSON: ", "while decoding JSON: ", "json: ", "yaml: "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	// go.yaml.in/yaml/v2 lists type errors one a line: "unmarshal errors:\n  line 3: ...".
	msgs := []string{msg}
	if rest, ok := strings.CutPrefix(msg, "unmarshal errors:\n"); ok {
		msgs = strings.Split(rest, "\n")
	}
	for _, msg := range msgs {
		e := &Error{File: rd.file, Source: source, Message: msg}
		if m := yamlLine.FindStringSubmatch(msg); m != nil && lines > 0 {
			n, _ := strconv.Atoi(m[1])
			// The parser may name the line after the last, at the end of the input.
			e.Line, e.Message = min(n, lines)+rd.offset, msg[len(m[0]):]
			if len(msgs) == 1 {
				e.Message = "invalid YAML: " + e.Message
			}
		} else if node != nil {
			e.Line, e.Column = node.Line+rd.offset, node.Column
		} else if lines > 0 {
			e.Line = rd.offset + 1
		}
		rd.errs = append(rd.errs, e)
	}
}

// topField is the value of a top-level key of a document, or nil.
func topField(node *yaml3.Node, name string) *yaml3.Node {
	if node == nil || node.Kind != yaml3.MappingNode {
		return nil
	}
	var folded *yaml3.Node
	for i := 0; i+1 < len(node.Content); i += 2 {
		switch k := node.Content[i]; {
		case k.Value == name:
			return node.Content[i+1]
		case folded == nil && strings.EqualFold(k.Value, name):
			folded = node.Content[i+1]
		}
	}
	return folded
}

// looksLikeLope says a document without apiVersion and kind has Lope's top-level keys.
func looksLikeLope(node *yaml3.Node) bool {
	if node == nil || node.Kind != yaml3.MappingNode {
		return false
	}
	for i := 0; i < len(node.Content); i += 2 {
		if k := node.Content[i].Value; isSnakeCase(k) || k == "operation" || k == "conversation" {
			return true
		}
	}
	return false
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
