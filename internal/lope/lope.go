// Package lope converts rules files of Lope ("Sec Lope de Vega"), the Python project Parley
// re-implements, into Parley ConversationRules.
//
// Convert reads a Lope file and what it imports, and maps every field Parley can carry.
// What it cannot carry (Python custom functions, forks, Redis-shared memory, regexes RE2
// cannot run, unknown fields) is left out and listed in Result.Dropped with its Lope field
// path; what changes meaning on the way is listed in Result.Notes. The rules returned always
// compile with rules.Compile when Dropped says nothing about Parley's compiler.
package lope

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules/codec"
)

// Issue is one thing reported about a conversion: Path is the Lope field path, e.g.
// conversation.custom_rules.rules[3].regex (spec.… when Parley's compiler is the one
// speaking).
type Issue struct {
	Path    string
	Message string
}

func (i Issue) String() string { return i.Path + ": " + i.Message }

// Result is a converted file.
type Result struct {
	Rules v1alpha1.ConversationRules
	// Dropped lists what could not be carried over.
	Dropped []Issue
	// Notes lists what was carried over with a change a user should know about.
	Notes []Issue
}

// Options tune a conversion.
type Options struct {
	// Root is the directory that imports with is_relative: yes are read from, leading slash
	// or not, as Lope reads them from its engine's working directory. Empty means the
	// directory of the file that holds the import.
	Root string
}

// Convert reads the Lope rules file at path, resolves its imports and converts it. An error
// means the input could not be read or is not a usable Lope file; everything else is
// converted as far as possible and reported in the Result. Like the Result's Issues, an
// error does not name the file at path (the caller prefixes it once); one about an imported
// file names that file. A file that already holds ConversationRules gives
// ErrConversationRules.
func Convert(path string) (*Result, error) {
	return ConvertWith(path, Options{})
}

// ConvertWith is Convert with options.
func ConvertWith(path string, opts Options) (*Result, error) {
	src, err := load(path, opts.Root)
	if err != nil {
		return nil, err
	}
	c := &converter{src: src, res: &Result{}}
	if err := c.convert(); err != nil {
		return nil, err
	}
	return c.res, nil
}

// converter holds the state of one conversion.
type converter struct {
	src   *source
	res   *Result
	codec codec.Codec
	// vars maps declared variable names to their types, connection scope first, as Parley
	// looks them up.
	vars map[string]v1alpha1.VariableType
	// shared holds the names of the shared (multi_extconn_level) variables.
	shared map[string]bool
	// sessionUpdates says whether Lope applies rules' session_update (session.update.enable).
	sessionUpdates bool
	// opsWhen is when Lope runs built-in operations: custom_functions_when, read as Lope
	// reads it ("" when absent).
	opsWhen v1alpha1.MemoryUpdateWhen
	// byID indexes the converted custom rules, for references (triggers, switches, loops).
	byID map[int32]*ruleInfo
	// rulesInOrder holds every custom rule converted, ungrouped ones first, in file order.
	rulesInOrder []*ruleInfo
}

func (c *converter) drop(path, format string, args ...interface{}) {
	c.res.Dropped = append(c.res.Dropped, Issue{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (c *converter) note(path, format string, args ...interface{}) {
	c.res.Notes = append(c.res.Notes, Issue{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (c *converter) convert() error {
	f := &c.src.file
	c.res.Dropped = append(c.res.Dropped, c.src.unknown...)
	out := &c.res.Rules
	out.TypeMeta = metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "ConversationRules"}
	out.Name = NameFor(c.src.path)
	out.Spec.Description = strings.TrimSpace(f.Name)
	if g := strings.TrimSpace(f.ExtConnGroup); g != "" && g != "default" {
		out.Spec.Group = g
	}
	// Lope ignores a file without enable_use: yes; Parley's default is the opposite.
	enabled := f.EnableUse.on
	out.Spec.Enabled = &enabled

	op, err := c.operation(&f.Operation)
	if err != nil {
		return err
	}
	out.Spec.Operation = op
	c.processor("operation.custom_function_preprocessor", f.Operation.Preprocessor, false)
	c.processor("operation.custom_function_postprocessor", f.Operation.Postprocessor, true)
	c.importNotes()
	out.Spec.Memory = c.memory(&f.Operation)
	out.Spec.Operation.StartWhen = c.startWhen(&f.Operation)
	out.Spec.Conversation = c.conversation(&f.Conversation)
	c.operationsWhen()
	c.paceZeroDelayCycles()
	c.compileCheck()
	return nil
}

var notDNS = regexp.MustCompile(`[^a-z0-9]+`)

// NameFor derives a ConversationRules name (a DNS-1123 label) from a file name:
// "Tutorial_8888.yml" becomes "tutorial-8888".
func NameFor(path string) string {
	base := filepath.Base(path)
	base = strings.TrimSuffix(base, filepath.Ext(base))
	name := strings.Trim(notDNS.ReplaceAllString(strings.ToLower(base), "-"), "-")
	if len(name) > validation.DNS1123LabelMaxLength {
		name = strings.TrimRight(name[:validation.DNS1123LabelMaxLength], "-")
	}
	if name == "" || len(validation.IsDNS1123Label(name)) > 0 {
		return "lope-rules"
	}
	return name
}
