package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/parley-dev/parley/internal/rulesfile"
	"github.com/parley-dev/parley/rules"
)

func newCheckCommand() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "check [-f] FILE|DIR|- ...",
		Short: "Validate ConversationRules: exit 0 when valid, else print every error with its field path",
		Long: "Validate ConversationRules. Files come as arguments or with -f, as kubectl apply takes them: " +
			"a file, a directory (its .yaml, .yml and .json files), or - for standard input; " +
			"a file may hold several documents and kind: List.",
		RunE: func(cmd *cobra.Command, args []string) error {
			files = append(files, args...)
			if len(files) == 0 {
				return errors.New("no rules: give a FILE, a directory, or - for standard input")
			}
			return check(cmd.OutOrStdout(), cmd.InOrStdin(), files)
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "ConversationRules YAML or JSON: a file, a directory, or - for standard input (repeatable)")
	return cmd
}

func check(out io.Writer, stdin io.Reader, files []string) error {
	invalid := 0
	for _, f := range files {
		docs, skipped, err := rulesfile.ReadPaths([]string{f}, stdin)
		if err != nil {
			// Every mistake of every document; the documents read without one are still
			// compiled below.
			fmt.Fprintln(out, err)
			invalid += rulesfile.InvalidDocuments(err)
		}
		for _, s := range skipped {
			fmt.Fprintf(out, "%s (skipped)\n", s)
		}
		if len(docs) == 0 && err == nil {
			fmt.Fprintf(out, "%s: no %s found\n", f, rulesfile.Kind)
			invalid++
		}
		for _, d := range docs {
			prog, errs := rules.Compile(d.Name(), d.Rules.Generation, &d.Rules.Spec)
			if len(errs) > 0 {
				invalid++
				for _, e := range errs {
					fmt.Fprintf(out, "%s: %s: %s\n", d.Source, d.Name(), e.Error())
				}
				continue
			}
			fmt.Fprintf(out, "%s: %s: valid (%d rules, %s %s %s:%d)\n", d.Source, d.Name(), prog.RuleCount,
				prog.Mode, prog.Transport, prog.IP, prog.Port)
		}
	}
	if invalid > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d invalid rules document(s)", invalid)}
	}
	return nil
}
