package rulesfile

import (
	"encoding"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	yaml "go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/internal/text"
)

// The walker reads a document's node tree (positions kept) against the Go type it decodes
// into, the way sigs.k8s.io/yaml and encoding/json would, and notes every mistake where it
// is: unknown fields, values of the wrong kind, and YAML 1.1 words that a string field would
// silently take as "true" or "false". The decoder stays the judge of what a document means;
// the walker only says where and why.

var (
	durationType    = reflect.TypeFor[metav1.Duration]()
	timeType        = reflect.TypeFor[metav1.Time]()
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

const (
	wantDuration = `a duration such as "30s"`
	wantTime     = "a time such as 2006-01-02T15:04:05Z"
	// maxVisits bounds the walk of a document whose aliases expand without end (a billion
	// laughs); the decoder refuses such a document on its own.
	maxVisits = 4_000_000
)

// finding is one mistake at a node.
type finding struct {
	line, column int // in the file
	path         string
	message      string
	quoteIt      bool
}

type walker struct {
	offset    int  // the document's first line in the file, minus one
	strict    bool // unknown fields are mistakes
	findings  []finding
	following map[*yaml.Node]bool // aliases being followed: one inside its own anchor is not followed again
	visits    int
	budget    int
	aborted   bool // the budget ran out: findings may be incomplete
}

func newWalker(root *yaml.Node, offset int, strict bool) *walker {
	w := &walker{offset: offset, strict: strict, following: map[*yaml.Node]bool{}}
	nodes := w.scan(root, map[*yaml.Node]bool{})
	w.budget = min(100*nodes+100_000, maxVisits)
	return w
}

// check walks the document against t, unless an alias inside its own anchor makes any
// reading of it loop.
func (w *walker) check(root *yaml.Node, t reflect.Type) {
	if len(w.findings) == 0 {
		w.walk(root, t, "")
	}
}

// scan counts the nodes of a tree as written, aliases unexpanded, and notes every alias
// inside the node it names: the decoder refuses those wherever they are.
func (w *walker) scan(n *yaml.Node, ancestors map[*yaml.Node]bool) int {
	if n == nil {
		return 0
	}
	if n.Kind == yaml.AliasNode && ancestors[n.Alias] {
		w.add(n, "", fmt.Sprintf("*%s is inside the node anchored &%s: an alias cannot contain itself", n.Value, n.Value))
	}
	ancestors[n] = true
	c := 1
	for _, ch := range n.Content {
		c += w.scan(ch, ancestors)
	}
	delete(ancestors, n)
	return c
}

// maxFindings bounds what one document reports: past it, the rest is noise (an alias that
// repeats a mistake a million times).
const maxFindings = 100

func (w *walker) add(n *yaml.Node, path, message string) {
	w.note(finding{line: n.Line + w.offset, column: n.Column, path: path, message: message})
}

func (w *walker) note(f finding) {
	if len(w.findings) == maxFindings {
		w.aborted = true
		return
	}
	w.findings = append(w.findings, f)
}

// walk checks n against t; path is n's field path.
func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n == nil || w.aborted {
		return
	}
	if w.visits++; w.visits > w.budget {
		w.aborted = true
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) > 0 {
			w.walk(n.Content[0], t, path)
		}
		return
	case yaml.AliasNode:
		w.follow(n, path, func(target *yaml.Node) { w.walk(target, t, path) })
		return
	}
	nilable := false
	for t.Kind() == reflect.Pointer {
		t, nilable = t.Elem(), true
	}
	if n.Kind == yaml.ScalarNode && resolve(n).kind == kindNull {
		// null sets a pointer, a list or a map to nil and leaves anything else as it is,
		// except a value that decodes itself: a Duration then fails on "".
		if t == durationType && !nilable {
			w.add(n, path, "want "+wantDuration+", got nothing (null)")
		}
		return
	}
	switch {
	case t == durationType:
		w.duration(n, path)
		return
	case t == timeType:
		w.time(n, path)
		return
	case reflect.PointerTo(t).Implements(jsonUnmarshaler), reflect.PointerTo(t).Implements(textUnmarshaler):
		return // its own syntax (raw JSON, quantities, ...): the decoder says what it refuses
	}
	switch t.Kind() {
	case reflect.Struct:
		w.structure(n, t, path)
	case reflect.Map:
		w.mapping(n, t, path)
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return // bytes: a base64 string
		}
		w.sequence(n, t, path)
	case reflect.String:
		w.str(n, path)
	case reflect.Bool:
		w.boolean(n, path)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		w.integer(n, t, path)
	case reflect.Float32, reflect.Float64:
		w.float(n, path)
	}
}

// follow walks the anchored node an alias names, refusing an alias inside its own anchor.
func (w *walker) follow(n *yaml.Node, path string, f func(*yaml.Node)) {
	if n.Alias == nil {
		return
	}
	if w.following[n] {
		return // inside its own anchor: scan has said so
	}
	w.following[n] = true
	f(n.Alias)
	delete(w.following, n)
}

func (w *walker) structure(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		w.wrongKind(n, path, "a mapping (field: value)")
		return
	}
	fields := fieldsOf(t)
	w.pairs(n, path, func(k, v *yaml.Node) {
		name, ok := w.key(k, path)
		if !ok {
			return
		}
		f := lookupField(fields, name)
		if f == nil {
			if w.strict {
				w.add(k, join(path, k.Value), unknownField(k.Value, fields))
			}
			return
		}
		w.walk(v, f.typ, join(path, f.name))
	})
}

func (w *walker) mapping(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		w.wrongKind(n, path, "a mapping (key: value)")
		return
	}
	w.pairs(n, path, func(k, v *yaml.Node) {
		name, ok := w.key(k, path)
		if !ok {
			return
		}
		w.walk(v, t.Elem(), fmt.Sprintf("%s[%s]", path, name))
	})
}

func (w *walker) sequence(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.SequenceNode {
		w.wrongKind(n, path, "a list")
		return
	}
	for i, item := range n.Content {
		w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
	}
}

// pairs calls f on every key and value of a mapping, merges (<<) included, and notes a key
// given twice.
func (w *walker) pairs(n *yaml.Node, path string, f func(k, v *yaml.Node)) {
	seen := map[string]*yaml.Node{}
	w.eachPair(n, path, false, func(k, v *yaml.Node, merged bool) {
		if !merged && k.Kind == yaml.ScalarNode {
			s := resolve(k)
			id := fmt.Sprintf("%d:%s", s.kind, s.text())
			if first, dup := seen[id]; dup {
				w.add(k, join(path, k.Value), fmt.Sprintf("given twice (first on line %d)", first.Line+w.offset))
				return
			}
			seen[id] = k
		}
		f(k, v)
	})
}

func (w *walker) eachPair(n *yaml.Node, path string, merged bool, f func(k, v *yaml.Node, merged bool)) {
	for i := 0; i+1 < len(n.Content) && !w.aborted; i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			w.merge(v, path, f)
			continue
		}
		f(k, v, merged)
	}
}

// merge walks the mappings a merge key (<<: *base) brings in, as go.yaml.in/yaml/v2 does.
func (w *walker) merge(v *yaml.Node, path string, f func(k, v *yaml.Node, merged bool)) {
	if w.visits++; w.visits > w.budget {
		w.aborted = true
		return
	}
	mapping := func(m *yaml.Node) {
		switch {
		case m.Kind == yaml.MappingNode:
			w.eachPair(m, path, true, f)
		case m.Kind == yaml.AliasNode && m.Alias != nil && m.Alias.Kind == yaml.MappingNode:
			w.follow(m, path, func(target *yaml.Node) { w.eachPair(target, path, true, f) })
		default:
			w.add(m, path, "<< (a merge) takes a mapping, an alias of one, or a list of them")
		}
	}
	if v.Kind == yaml.SequenceNode {
		for _, item := range v.Content {
			mapping(item)
		}
		return
	}
	mapping(v)
}

// key is a mapping key as the decoder spells it (yes is "true", 0x10 is "16").
func (w *walker) key(k *yaml.Node, path string) (string, bool) {
	if k.Kind == yaml.AliasNode && k.Alias != nil {
		k = k.Alias
	}
	if k.Kind != yaml.ScalarNode {
		w.add(k, path, "want a name as key, got "+describe(k))
		return "", false
	}
	s := resolve(k)
	switch s.kind {
	case kindNull:
		w.add(k, path, "want a name as key, got "+s.describe())
		return "", false
	case kindFloat:
		switch {
		case math.IsInf(s.f, 1):
			return ".inf", true
		case math.IsInf(s.f, -1):
			return "-.inf", true
		case math.IsNaN(s.f):
			return ".nan", true
		}
	}
	return s.text(), true
}

func (w *walker) str(n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode {
		w.wrongKind(n, path, "a string")
		return
	}
	if b, word := yaml11Words[n.Value]; word && isPlain(n) {
		w.note(finding{
			line: n.Line + w.offset, column: n.Column, path: path, quoteIt: true,
			message: fmt.Sprintf("unquoted %s is the boolean %t in YAML 1.1 (as kubectl reads it), so this string field would be %q: quote it (%q) to keep the word, or write %t",
				n.Value, b, fmt.Sprint(b), n.Value, b),
		})
	}
}

func (w *walker) boolean(n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode {
		w.wrongKind(n, path, "true or false")
		return
	}
	if resolve(n).kind != kindBool {
		w.wrongKind(n, path, "true or false")
	}
}

var decimal = regexp.MustCompile(`^[-+]?[0-9]+(\.[0-9]+)?$`)

func (w *walker) integer(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.ScalarNode {
		w.wrongKind(n, path, "an integer")
		return
	}
	s := resolve(n)
	v := reflect.New(t).Elem()
	signed := v.CanInt()
	fits := false
	switch s.kind {
	case kindInt:
		switch {
		case s.unsigned:
			fits = !signed && !v.OverflowUint(s.u)
		case signed:
			fits = !v.OverflowInt(s.i)
		default:
			fits = s.i >= 0 && !v.OverflowUint(uint64(s.i))
		}
	case kindFloat:
		// A float goes through JSON as its shortest decimal, which an integer field takes
		// when it has no fraction and no exponent.
		if s.f != math.Trunc(s.f) || math.IsInf(s.f, 0) || math.Abs(s.f) >= 1e21 {
			break
		}
		switch {
		case signed:
			fits = s.f >= math.MinInt64 && s.f < math.MaxInt64 && !v.OverflowInt(int64(s.f))
		default:
			fits = s.f >= 0 && s.f < math.MaxUint64 && !v.OverflowUint(uint64(s.f))
		}
	}
	switch {
	case fits:
	case s.kind == kindInt || s.kind == kindFloat && s.f == math.Trunc(s.f):
		lo, hi := intRange(v)
		w.add(n, path, fmt.Sprintf("%s is out of range: want an integer from %s to %s", s.s, lo, hi))
	case s.kind == kindString && n.Style&quotedStyles != 0 && resolvePlain(s.s).kind == kindInt:
		w.wrongKind(n, path, "an integer", "remove the quotes")
	default:
		w.wrongKind(n, path, "an integer")
	}
}

func intRange(v reflect.Value) (string, string) {
	bits := v.Type().Bits()
	if v.CanInt() {
		return fmt.Sprint(-(int64(1) << (bits - 1))), fmt.Sprint(uint64(1)<<(bits-1) - 1)
	}
	return "0", fmt.Sprint(uint64(math.MaxUint64) >> (64 - bits))
}

func (w *walker) float(n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode {
		w.wrongKind(n, path, "a number")
		return
	}
	s := resolve(n)
	if s.kind == kindInt || s.kind == kindFloat && !math.IsInf(s.f, 0) && !math.IsNaN(s.f) {
		return
	}
	w.wrongKind(n, path, "a number")
}

func (w *walker) duration(n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode {
		w.wrongKind(n, path, wantDuration)
		return
	}
	s := resolve(n)
	switch s.kind {
	case kindString:
		if _, err := time.ParseDuration(s.s); err != nil {
			w.add(n, path, fmt.Sprintf(`%s is not a duration: want a number with a unit (ms, s, m, h), such as "30s", "500ms" or "1m30s"`, quoteShort(s.s)))
		}
	case kindInt, kindFloat:
		hint := "a duration needs a unit: ms, s, m or h"
		if decimal.MatchString(s.s) {
			hint = fmt.Sprintf("write %ss (%s)", s.s, hint)
		}
		w.wrongKind(n, path, wantDuration, hint)
	default:
		w.wrongKind(n, path, wantDuration)
	}
}

func (w *walker) time(n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode {
		w.wrongKind(n, path, wantTime)
		return
	}
	s := resolve(n)
	if s.kind != kindString {
		w.wrongKind(n, path, wantTime)
		return
	}
	if _, err := time.Parse(time.RFC3339, s.s); err != nil {
		w.wrongKind(n, path, wantTime)
	}
}

// wrongKind notes a value of the wrong kind, with what was wanted, and a hint for the usual
// causes: an unquoted {{template}} or [class] that YAML reads as a mapping or a list.
func (w *walker) wrongKind(n *yaml.Node, path, want string, hints ...string) {
	msg := "want " + want + ", got " + describe(n)
	scalarWanted := !strings.HasPrefix(want, "a mapping") && want != "a list"
	switch {
	case scalarWanted && n.Kind == yaml.MappingNode && n.Style&yaml.FlowStyle != 0:
		hints = append(hints, `a value that starts with "{" is a YAML mapping: quote it`)
	case scalarWanted && n.Kind == yaml.SequenceNode && n.Style&yaml.FlowStyle != 0:
		hints = append(hints, `a value that starts with "[" is a YAML list: quote it`)
	case want == "a list" && n.Kind == yaml.MappingNode:
		hints = append(hints, `write [{...}] or one "- " per item`)
	}
	for _, h := range hints {
		msg += "; " + h
	}
	w.add(n, path, msg)
}

// describe names what a node is, for messages.
func describe(n *yaml.Node) string {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return resolve(n).describe()
	}
	return "nothing"
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// unknownField says a field does not exist, suggests the closest that does, and points a
// Lope field name to `parley import`.
func unknownField(name string, fields []field) string {
	msg := "unknown field"
	if s := text.Closest(name, fieldNames(fields)); s != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	}
	if isSnakeCase(name) {
		msg += "; snake_case names are Lope's, ConversationRules are camelCase: convert a Lope rules file with `parley import FILE`"
	}
	return msg
}

func isSnakeCase(name string) bool {
	return strings.Contains(name, "_") && strings.ToLower(name) == name
}

func fieldNames(fields []field) []string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	return names
}

// field is a struct field as encoding/json names it.
type field struct {
	name string
	typ  reflect.Type
}

var fieldCache sync.Map // reflect.Type → []field

// fieldsOf lists the fields encoding/json decodes into a struct: tagged names, embedded
// structs' fields promoted (the shallowest wins; two at one depth cancel unless one is
// tagged), "-" left out.
func fieldsOf(t reflect.Type) []field {
	if f, ok := fieldCache.Load(t); ok {
		return f.([]field)
	}
	type candidate struct {
		field
		depth  int
		tagged bool
	}
	var all []candidate
	seen := map[reflect.Type]bool{}
	var visit func(t reflect.Type, depth int)
	visit = func(t reflect.Type, depth int) {
		if seen[t] {
			return
		}
		seen[t] = true
		for i := range t.NumField() {
			sf := t.Field(i)
			ft := sf.Type
			if sf.Anonymous {
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if !sf.IsExported() && ft.Kind() != reflect.Struct {
					continue
				}
			} else if !sf.IsExported() {
				continue
			}
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if sf.Anonymous && name == "" && ft.Kind() == reflect.Struct {
				visit(ft, depth+1)
				continue
			}
			tagged := name != ""
			if !tagged {
				name = sf.Name
			}
			all = append(all, candidate{field{name, sf.Type}, depth, tagged})
		}
	}
	visit(t, 0)
	var fields []field
	for _, c := range all {
		rivals := 0
		dominated := false
		for _, o := range all {
			if o.name != c.name {
				continue
			}
			switch {
			case o.depth < c.depth:
				dominated = true
			case o.depth == c.depth:
				if o.tagged && !c.tagged {
					dominated = true
				} else if o.tagged == c.tagged {
					rivals++
				}
			}
		}
		if !dominated && rivals == 1 {
			fields = append(fields, c.field)
		}
	}
	fieldCache.Store(t, fields)
	return fields
}

// lookupField finds a key as encoding/json does: the exact name, else one that differs in
// case only.
func lookupField(fields []field, name string) *field {
	if i := slices.IndexFunc(fields, func(f field) bool { return f.name == name }); i >= 0 {
		return &fields[i]
	}
	if i := slices.IndexFunc(fields, func(f field) bool { return strings.EqualFold(f.name, name) }); i >= 0 {
		return &fields[i]
	}
	return nil
}
