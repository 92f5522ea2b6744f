package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/activity"
	"github.com/parley-dev/parley/internal/kube"
)

// pluginName is the name under which kubectl finds the binary as a plugin: `kubectl parley`.
const pluginName = "kubectl-parley"

// asPlugin says whether the binary runs as `kubectl parley`.
func asPlugin() bool { return filepath.Base(os.Args[0]) == pluginName }

// addKubeFlags binds kubectl's connection flags.
func addKubeFlags(fs *pflag.FlagSet, f *kube.Flags) {
	fs.StringVar(&f.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
	fs.StringVar(&f.Context, "context", "", "kubeconfig context (default: the current one)")
	fs.StringVarP(&f.Namespace, "namespace", "n", "", "namespace (default: the context's)")
}

func newTailCommand() *cobra.Command {
	var (
		f      kube.Flags
		last   int
		follow bool
		output string
	)
	cmd := &cobra.Command{
		Use:   "tail [CONNECTOR]",
		Short: "Print a namespace's Activities as parley run does, then follow new ones (kubectl parley tail)",
		Long: "Print the last Activities of a connector (or of every connector of the namespace) in time order, " +
			"as `parley run` prints them, then the new ones as they are written, until Ctrl-C.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output %q: want table or json", output)
			}
			connector := ""
			if len(args) == 1 {
				connector = args[0]
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return tail(ctx, cmd.OutOrStdout(), f, connector, last, follow, output)
		},
	}
	addKubeFlags(cmd.Flags(), &f)
	cmd.Flags().IntVar(&last, "tail", 10, "how many of the latest Activities to print first (-1: all)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", true, "print new Activities as they are written")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table (for people) or json (one Activity per line)")
	return cmd
}

func tail(ctx context.Context, out io.Writer, f kube.Flags, connector string, last int, follow bool, output string) error {
	c, err := kube.Connect(f)
	if err != nil {
		return err
	}
	items, rv, err := c.Activities(ctx, connector)
	if err != nil {
		return err
	}
	if last >= 0 && len(items) > last {
		items = items[len(items)-last:]
	}
	var sink activity.Sink = activity.NewJSONSink(out)
	if output == "table" {
		sink = activity.NewTableSink(out, activity.TableOptions{ConnectorColumn: connector == "", Color: colorTerminal(out)})
	}
	batch := make([]*v1alpha1.ActivityRecord, len(items))
	for i := range items {
		batch[i] = &items[i].ActivityRecord
	}
	if err := sink.Write(batch); err != nil {
		return err
	}
	if !follow {
		return nil
	}
	var writeErr error
	err = c.Follow(ctx, connector, rv, func(a *v1alpha1.Activity) {
		if writeErr == nil {
			writeErr = sink.Write([]*v1alpha1.ActivityRecord{&a.ActivityRecord})
		}
	})
	if err != nil {
		return err
	}
	return writeErr
}
