package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/parley-dev/parley/internal/lope"
)

func newImportCommand() *cobra.Command {
	var dir, root string
	cmd := &cobra.Command{
		Use:   "import FILE... [-o DIR] [--lope-root DIR]",
		Short: "Convert Lope rules files into ConversationRules",
		Long: "Convert Lope (\"Sec Lope de Vega\") conversation rules files, with the files they import, " +
			"into ConversationRules for kubectl apply and parley run.\n\n" +
			"Writes a multi-document YAML stream on stdout, or one NAME.yaml per input into DIR with -o. " +
			"Everything that could not be carried over (Python functions, forks, shared Redis memory, " +
			"regexes RE2 cannot run, unknown fields) and every change of meaning is printed on stderr as " +
			"FILE: PATH: message, PATH being the Lope field.\n\n" +
			"Imports with is_relative: yes are read from --lope-root (Lope reads them from its working " +
			"directory, a leading / included), or else from the directory of the file that imports them.\n\n" +
			"A file that already holds ConversationRules is not converted and not copied to the output: " +
			"stderr says so, and it does not change the exit status.\n\n" +
			"Exit status: 0 all converted; 2 something was dropped (the rest is still written); " +
			"1 an input could not be read or is not a usable Lope file.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			return importFiles(cmd.OutOrStdout(), cmd.ErrOrStderr(), files, dir, root)
		},
	}
	cmd.Flags().StringVarP(&dir, "output-dir", "o", "", "write one NAME.yaml per input into this directory instead of stdout")
	cmd.Flags().StringVar(&root, "lope-root", "", "read imports with is_relative: yes from this directory, as Lope does from its working directory (default: the importing file's directory)")
	return cmd
}

func importFiles(stdout, stderr io.Writer, files []string, dir, root string) error {
	if root != "" {
		if st, err := os.Stat(root); err != nil || !st.IsDir() {
			return &exitError{code: 1, err: fmt.Errorf("--lope-root %s: not a directory", root)}
		}
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return &exitError{code: 1, err: err}
		}
	}
	failed, dropped := 0, 0
	used := map[string]bool{}
	for _, f := range files {
		res, err := lope.ConvertWith(f, lope.Options{Root: root})
		if errors.Is(err, lope.ErrConversationRules) {
			// Not a failure: the file needs nothing, and is not copied into the output,
			// which holds what was converted (and compiled) only.
			fmt.Fprintf(stderr, "%s: %v (parley check validates it; parley run and kubectl apply take it as it is)\n", f, err)
			continue
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", f, err)
			failed++
			continue
		}
		for _, is := range res.Dropped {
			fmt.Fprintf(stderr, "%s: %s: dropped: %s\n", f, is.Path, is.Message)
		}
		for _, is := range res.Notes {
			fmt.Fprintf(stderr, "%s: %s: note: %s\n", f, is.Path, is.Message)
		}
		dropped += len(res.Dropped)
		// Two inputs named alike (a/rules.yml, b/rules.yml) must not overwrite each other.
		name := res.Rules.Name
		for n := 2; used[name]; n++ {
			name = fmt.Sprintf("%s-%d", res.Rules.Name, n)
		}
		used[name] = true
		res.Rules.Name = name
		out, err := lope.Marshal(&res.Rules)
		if err != nil {
			return &exitError{code: 1, err: fmt.Errorf("%s: %w", f, err)}
		}
		if dir == "" {
			if _, err := fmt.Fprintf(stdout, "---\n%s", out); err != nil {
				return &exitError{code: 1, err: err}
			}
			continue
		}
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, out, 0o644); err != nil {
			return &exitError{code: 1, err: err}
		}
		fmt.Fprintf(stderr, "%s: wrote %s\n", f, path)
	}
	switch {
	case failed > 0:
		return &exitError{code: 1, err: fmt.Errorf("%d of %d file(s) could not be converted", failed, len(files))}
	case dropped > 0:
		return &exitError{code: 2, err: fmt.Errorf("%d item(s) could not be carried over (listed above); everything else was converted", dropped)}
	}
	return nil
}
