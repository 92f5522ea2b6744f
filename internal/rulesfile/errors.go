package rulesfile

import (
	"errors"
	"fmt"
	"strings"
)

// Error is one mistake found while reading a document, with where it is.
type Error struct {
	// File is the path as given, or <stdin>.
	File string
	// Line and Column are 1-based positions in the file; 0 when unknown.
	Line, Column int
	// Source names the document as Document.Source does (FILE#N, FILE#N/items[I]).
	Source string
	// Path is the field path in the document, such as spec.conversation.rules[3].regex;
	// empty when the mistake is the document's own (its YAML syntax, say).
	Path string
	// Message says what is wrong and, when it can, what to write instead.
	Message string

	// quoteIt marks an unquoted YAML 1.1 boolean word in a string field: a document that
	// would otherwise decode, but not as written.
	quoteIt bool
}

// Error reads FILE:LINE:COLUMN: PATH: MESSAGE, as compilers print positions.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// Errors is every mistake found while reading, in file order: each an *Error, or the error of
// a file or directory that could not be read.
type Errors []error

// Error prints one mistake per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap gives the mistakes to errors.Is and errors.As.
func (es Errors) Unwrap() []error { return es }

// Documents counts the documents in error, and each file that could not be read as one.
func (es Errors) Documents() int {
	n := 0
	seen := map[string]bool{}
	for _, e := range es {
		var re *Error
		if !errors.As(e, &re) || re.Source == "" {
			n++
			continue
		}
		if !seen[re.Source] {
			seen[re.Source] = true
			n++
		}
	}
	return n
}

// InvalidDocuments counts the documents in error of an error returned by Read or ReadAll:
// Errors.Documents, or 1 for any other error.
func InvalidDocuments(err error) int {
	var es Errors
	switch {
	case err == nil:
		return 0
	case errors.As(err, &es):
		return es.Documents()
	}
	return 1
}
