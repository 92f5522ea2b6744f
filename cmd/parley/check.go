package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/parley-dev/parley/internal/kube"
	"github.com/parley-dev/parley/internal/rulesfile"
	"github.com/parley-dev/parley/rules"
	"github.com/parley-dev/parley/sink"
)

func newCheckCommand() *cobra.Command {
	var (
		files   []string
		cluster bool
		strict  bool
		f       kube.Flags
	)
	cmd := &cobra.Command{
		Use:   "check [-f] FILE|DIR|- ...",
		Short: "Validate ConversationRules and ActivitySinks: exit 0 when valid, else print every error with its field path",
		Long: "Validate ConversationRules and ActivitySinks. Files come as arguments or with -f, as kubectl apply takes them: " +
			"a file, a directory (its .yaml, .yml and .json files), or - for standard input; " +
			"a file may hold several documents and kind: List.",
		RunE: func(cmd *cobra.Command, args []string) error {
			files = append(files, args...)
			if len(files) == 0 {
				return errors.New("no rules: give a FILE, a directory, or - for standard input")
			}
			var server *kube.Client
			if cluster {
				var err error
				if server, err = kube.Connect(f); err != nil {
					return err
				}
			}
			return check(cmd.Context(), cmd.OutOrStdout(), cmd.InOrStdin(), files, server, strict)
		},
	}
	cmd.Flags().BoolVar(&cluster, "cluster", asPlugin(), "also ask the cluster's API server (a server-side dry run: its schema and admission) "+
		"whether it takes each valid document (default with kubectl parley)")
	cmd.Flags().BoolVar(&strict, "strict", false, "fail on warnings too (what compiles but will not work as written)")
	addKubeFlags(cmd.Flags(), &f)
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "ConversationRules YAML or JSON: a file, a directory, or - for standard input (repeatable)")
	return cmd
}

// check compiles every document of files; with a server, it also asks the cluster whether
// it would take each valid one. Warnings fail it only when strict.
func check(ctx context.Context, out io.Writer, stdin io.Reader, files []string, server *kube.Client, strict bool) error {
	invalid, invalidSinks, warned := 0, 0, 0
	var all []rulesfile.Document
	progs := map[int]*rules.Program{}
	for _, f := range files {
		read, err := rulesfile.ReadAll([]string{f}, stdin)
		docs, skipped := read.Rules, read.Skipped
		if err != nil {
			// Every mistake of every document; the documents read without one are still
			// compiled below.
			fmt.Fprintln(out, err)
			invalid += rulesfile.InvalidDocuments(err)
		}
		for _, s := range skipped {
			fmt.Fprintf(out, "%s (skipped)\n", s)
		}
		if len(docs) == 0 && len(read.Sinks) == 0 && err == nil {
			fmt.Fprintf(out, "%s: no %s found\n", f, rulesfile.Kind)
			invalid++
		}
		for i := range read.Sinks {
			d := &read.Sinks[i]
			if errs := sinkErrors(d); len(errs) > 0 {
				for _, line := range errs {
					fmt.Fprintln(out, line)
				}
				invalidSinks++
				continue
			}
			fmt.Fprintf(out, "%s: ActivitySink %s: valid (%s)\n", d.Source, d.Sink.Name, sink.Type(&d.Sink.Spec))
		}
		for _, d := range docs {
			prog, errs, warnings := compileDocument(&d)
			for _, line := range append(errs, warnings...) {
				fmt.Fprintln(out, line)
			}
			warned += len(warnings)
			if len(errs) > 0 {
				invalid++
				continue
			}
			progs[len(all)] = prog
			all = append(all, d)
			if server != nil {
				if err := server.CheckRules(ctx, &d.Rules); err != nil {
					invalid++
					fmt.Fprintf(out, "%s: %s: refused by the cluster: %v\n", d.Source, d.Name(), err)
					continue
				}
			}
			fmt.Fprintf(out, "%s: %s: valid (%d rules, %s %s %s:%d)\n", d.Source, d.Name(), prog.RuleCount,
				prog.Mode, prog.Transport, prog.IP, prog.Port)
		}
	}
	across := documentWarnings(all, progs)
	for _, w := range across {
		fmt.Fprintln(out, w)
	}
	warned += len(across)
	switch {
	case invalid > 0 && invalidSinks > 0:
		return &exitError{code: 1, err: fmt.Errorf("%d invalid rules document(s), %d invalid ActivitySink(s)", invalid, invalidSinks)}
	case invalid > 0:
		return &exitError{code: 1, err: fmt.Errorf("%d invalid rules document(s)", invalid)}
	case invalidSinks > 0:
		return &exitError{code: 1, err: fmt.Errorf("%d invalid ActivitySink(s)", invalidSinks)}
	case warned > 0 && strict:
		return &exitError{code: 1, err: fmt.Errorf("%d warning(s), and --strict", warned)}
	}
	return nil
}
