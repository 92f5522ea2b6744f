package lope

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	yaml "go.yaml.in/yaml/v2"
)

// maxImportDepth bounds import chains; a cycle is reported long before, this only stops a
// pathological tree of distinct files.
const maxImportDepth = 32

// source is a primary file with its imports resolved: every variable, rule and group, each
// with the Lope path it is reported under. Imported items are addressed through the import
// entry that brought them in, e.g. conversation.custom_rules.import[0].rules[2].
type source struct {
	path    string
	file    file
	shared  []varSrc
	global  []varSrc
	conn    []varSrc
	rules   []ruleSrc
	groups  []groupSrc
	unknown []Issue
	// memImports and ruleImports are the import entries read, as trees: what each
	// imported file imports in turn.
	memImports, ruleImports []*importNode
}

// importNode is an import entry that was read, with the entries of the file it brought in.
type importNode struct {
	path     string // the Lope path of the entry, e.g. memory_variables.import[1]
	children []*importNode
}

type varSrc struct {
	path string
	v    *variable
}

type ruleSrc struct {
	path string
	r    *rule
}

type groupSrc struct {
	path  string
	g     *group
	rules []ruleSrc
}

// loader reads a primary file and, recursively, what it imports.
type loader struct {
	src     *source
	mainDir string
	// root, when set, is where every is_relative import is read from (Lope's working
	// directory); otherwise each is read from the directory of the file that imports it.
	root string
	// seen dedupes unknown-field reports of an auxiliary file imported more than once.
	seen map[string]bool
}

func load(path, root string) (*source, error) {
	src := &source{path: path}
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	if err := notLope(data); err != nil {
		return nil, err
	}
	if err := decode(data, &src.file); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if root != "" {
		if root, err = filepath.Abs(root); err != nil {
			return nil, err
		}
	}
	l := &loader{src: src, mainDir: filepath.Dir(abs), root: root, seen: map[string]bool{}}
	unknownFields(reflect.ValueOf(&src.file), "", &src.unknown)

	m := &src.file.Memory
	l.addVars("memory_variables.", m.Shared, m.Global, m.Connection)
	if err := l.imports("memory_variables.", m.Import, l.mainDir, []string{abs}, l.addAuxVars, &src.memImports); err != nil {
		return nil, err
	}
	cr := &src.file.Conversation.CustomRules
	l.addRules("conversation.custom_rules.", cr.Rules, cr.Groups)
	if err := l.imports("conversation.custom_rules.", cr.Import, l.mainDir, []string{abs}, l.addAuxRules, &src.ruleImports); err != nil {
		return nil, err
	}
	return src, nil
}

// readYAML reads a Lope file into into. Its errors do not name the file: whoever reports
// them does, once.
func readYAML(path string, into interface{}) error {
	data, err := readFile(path)
	if err != nil {
		return err
	}
	return decode(data, into)
}

func readFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		// "open FILE: no such file or directory" without the FILE.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, pe.Err
		}
		return nil, err
	}
	if strings.TrimSpace(string(data)) == "" {
		return nil, errors.New("empty file")
	}
	return data, nil
}

func decode(data []byte, into interface{}) error {
	if err := yaml.Unmarshal(data, into); err != nil {
		// yaml lists wrongly typed values on lines of their own under a heading; one line
		// each, joined, keeps one report per line.
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return errors.New(strings.Join(te.Errors, "; "))
		}
		return err
	}
	return nil
}

func (l *loader) addVars(prefix string, shared, global, conn []variable) {
	add := func(into *[]varSrc, field string, vs []variable) {
		for i := range vs {
			*into = append(*into, varSrc{path: fmt.Sprintf("%s%s[%d]", prefix, field, i), v: &vs[i]})
		}
	}
	add(&l.src.shared, "multi_extconn_level", shared)
	add(&l.src.global, "global_level", global)
	add(&l.src.conn, "connection_level", conn)
}

func (l *loader) addRules(prefix string, rules []rule, groups []group) {
	for i := range rules {
		l.src.rules = append(l.src.rules, ruleSrc{path: fmt.Sprintf("%srules[%d]", prefix, i), r: &rules[i]})
	}
	for i := range groups {
		g := groupSrc{path: fmt.Sprintf("%sgroups[%d]", prefix, i), g: &groups[i]}
		for j := range groups[i].Rules {
			g.rules = append(g.rules, ruleSrc{path: fmt.Sprintf("%s.rules[%d]", g.path, j), r: &groups[i].Rules[j]})
		}
		l.src.groups = append(l.src.groups, g)
	}
}

func (l *loader) addAuxVars(prefix string, aux *auxFile) {
	l.addVars(prefix, aux.Shared, aux.Global, aux.Connection)
}

func (l *loader) addAuxRules(prefix string, aux *auxFile) {
	l.addRules(prefix, aux.Rules, aux.Groups)
}

// imports reads each imported file, hands it to add, and follows its own imports. stack
// holds the absolute paths of the files being imported, to refuse cycles.
func (l *loader) imports(prefix string, refs []importRef, dir string, stack []string, add func(string, *auxFile), tree *[]*importNode) error {
	for i, ref := range refs {
		at := fmt.Sprintf("%simport[%d]", prefix, i)
		if strings.TrimSpace(ref.Path) == "" {
			return fmt.Errorf("%s.path: an import needs a path", at)
		}
		target := ref.Path
		// Lope joins an is_relative path to its working directory, a leading slash
		// included (/conv_rules/x.yml); others are used as written (absolute, or relative
		// to the working directory).
		var base string
		if ref.IsRelative.on {
			base = dir
			if l.root != "" {
				base = l.root
			}
			target = filepath.Join(base, target)
		}
		abs, err := filepath.Abs(target)
		if err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
		for j, s := range stack {
			if s == abs {
				return fmt.Errorf("%s: import cycle: %s", at, l.chain(append(stack[j:], abs)))
			}
		}
		if len(stack) > maxImportDepth {
			return fmt.Errorf("%s: imports nested more than %d deep: %s", at, maxImportDepth, l.chain(append(stack, abs)))
		}
		aux := &auxFile{}
		if err := readYAML(target, aux); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%s: %s", at, l.notFound(ref, abs, base))
			}
			return fmt.Errorf("%s: %s: %w", at, target, err)
		}
		l.reportUnknown(abs, at, aux)
		add(at+".", aux)
		node := &importNode{path: at}
		*tree = append(*tree, node)
		if err := l.imports(at+".", aux.Import, filepath.Dir(abs), append(stack[:len(stack):len(stack)], abs), add, &node.children); err != nil {
			return err
		}
	}
	return nil
}

// notFound says which file an import was looked for as, and why there.
func (l *loader) notFound(ref importRef, abs, base string) string {
	switch {
	case !ref.IsRelative.on:
		return fmt.Sprintf("no file %s (path %q without is_relative: yes is used as written)", abs, ref.Path)
	case l.root != "":
		return fmt.Sprintf("no file %s (path %q with is_relative: yes is read from the import root %s)", abs, ref.Path, base)
	}
	return fmt.Sprintf("no file %s (path %q with is_relative: yes is read from the importing file's directory %s; Lope reads it from its working directory: give that as the import root, --lope-root)", abs, ref.Path, base)
}

// reportUnknown reports an auxiliary file's unknown fields once, under the first import
// that brought it in (the same file is usually imported for memory and for rules).
func (l *loader) reportUnknown(abs, at string, aux *auxFile) {
	var found []Issue
	unknownFields(reflect.ValueOf(aux), "", &found)
	for _, is := range found {
		key := abs + "|" + is.Path
		if l.seen[key] {
			continue
		}
		l.seen[key] = true
		l.src.unknown = append(l.src.unknown, Issue{Path: at + "." + is.Path, Message: is.Message})
	}
}

// chain prints an import chain with paths relative to the primary file.
func (l *loader) chain(files []string) string {
	names := make([]string, len(files))
	for i, f := range files {
		if rel, err := filepath.Rel(l.mainDir, f); err == nil {
			f = rel
		}
		names[i] = f
	}
	return strings.Join(names, " -> ")
}

// unknownFields reports every key collected in an Extra map, with its path. Field paths
// are built from the yaml tags, so they read as the Lope file does.
func unknownFields(v reflect.Value, path string, out *[]Issue) {
	switch v.Kind() {
	case reflect.Ptr, reflect.Interface:
		if !v.IsNil() {
			unknownFields(v.Elem(), path, out)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			unknownFields(v.Index(i), fmt.Sprintf("%s[%d]", path, i), out)
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			if f.Name == "Extra" {
				keys := make([]string, 0, v.Field(i).Len())
				for _, k := range v.Field(i).MapKeys() {
					keys = append(keys, fmt.Sprint(k.Interface()))
				}
				sort.Strings(keys)
				for _, k := range keys {
					*out = append(*out, Issue{Path: join(path, k), Message: "unknown Lope field, ignored"})
				}
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			unknownFields(v.Field(i), join(path, name), out)
		}
	}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
