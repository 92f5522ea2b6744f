package lope

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// Lope's custom functions are Python, which Parley cannot run; CEL (docs/rules.md §13) takes
// their place. The importer cannot translate Python it does not even have (the file names a
// function of Lope's Python module), so it writes a CEL skeleton where the function ran: a
// comment saying which function with which inputs and outputs, then an expression that
// passes everything through unchanged. The rules run as if the function did nothing, and
// the function is still reported as dropped, so the user knows where to start.

// skeleton is a pass-through CEL expression with a comment naming the Python function.
func skeleton(kind string, f *function, passThrough string) string {
	call := fmt.Sprintf("%s(%s)", f.Name, strings.Join(f.Input, ", "))
	if len(f.Output) > 0 {
		call += " -> " + strings.Join(f.Output, ", ")
	}
	return fmt.Sprintf("// Lope %s, a Python function: %s\n// Translate it into CEL here (docs/rules.md §13); this passes through unchanged.\n%s", kind, call, passThrough)
}

// celName matches the variable names a CEL expression can use as they are (docs/rules.md
// §13: no '-', no built-in name or reserved word).
var celName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

var celUnusable = map[string]bool{
	"input": true, "raw": true, "output": true, "peer": true, "conn": true, "session": true, "now": true,
	"true": true, "false": true, "null": true, "in": true, "as": true, "break": true, "const": true,
	"continue": true, "else": true, "for": true, "function": true, "if": true, "import": true,
	"let": true, "loop": true, "package": true, "namespace": true, "return": true, "var": true,
	"void": true, "while": true,
}

// processor writes Lope's pre- or postprocessor as operation.transform's input or output.
func (c *converter) processor(path string, f *function, output bool) {
	if f == nil || strings.TrimSpace(f.Name) == "" {
		return
	}
	if !f.Enable.on {
		c.note(path, "not enabled (enable: yes is needed, as in Lope); ignored")
		return
	}
	op := &c.res.Rules.Spec.Operation
	if op.Transform == nil {
		op.Transform = &v1alpha1.Transform{}
	}
	field := "spec.operation.transform.input"
	if output {
		op.Transform.Output = skeleton("postprocessor", f, "output")
		field = "spec.operation.transform.output"
	} else {
		op.Transform.Input = skeleton("preprocessor", f, "input")
	}
	c.drop(path, "Python function %q cannot run in Parley: %s holds a CEL skeleton that passes everything through; translate the function into it", f.Name, field)
}

// ruleFunction writes a rule's custom_function as updates of its outputs (each to its own
// value) or, when no output can be named in CEL, as a when that holds.
func (c *converter) ruleFunction(path string, f *function, out *v1alpha1.Rule) {
	if f == nil {
		return
	}
	if !f.Enable.on {
		c.note(path, "not enabled; ignored")
		return
	}
	var updates []v1alpha1.Update
	for _, name := range f.Output {
		if celName.MatchString(name) && !celUnusable[name] && c.declared(name) {
			updates = append(updates, v1alpha1.Update{Variable: name, Expr: skeleton("custom_function", f, name)})
		}
	}
	where := "its when"
	if len(updates) > 0 {
		out.Updates = append(out.Updates, updates...)
		where = "updates of its outputs"
	} else if out.When == "" {
		out.When = skeleton("custom_function", f, "true")
	}
	c.drop(path, "Python custom function %q cannot run in Parley: the rule holds a CEL skeleton in %s that changes nothing; translate the function into it", f.Name, where)
}

// declared reports whether the converted rules declare a variable name.
func (c *converter) declared(name string) bool {
	m := &c.res.Rules.Spec.Memory
	for _, vs := range [][]v1alpha1.Variable{m.Connection, m.Global} {
		for _, v := range vs {
			if v.Name == name {
				return true
			}
		}
	}
	return false
}
