package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/parley-dev/parley/internal/kube"
	"github.com/parley-dev/parley/internal/transcript"
)

type transcriptOptions struct {
	file, connector, run string
	cluster              bool
	kube                 kube.Flags
}

func newTranscriptCommand() *cobra.Command {
	var o transcriptOptions
	cmd := &cobra.Command{
		Use:   "transcript [LOG|-] [CONNECTION-ID]",
		Short: "Print one conversation as a dialogue with timings, from a JSON activity log or the cluster's Activities",
		Long: "Print one conversation as a dialogue: what the peer sent (<<) and what Parley sent (>>), each step " +
			"with its offset from the start, the rules that fired, captures, alerts, and how it ended.\n" +
			"The activities come from a JSON log (parley run -o json), named first or with -f (- for standard " +
			"input), or with --from-cluster (or --kubeconfig, -n) from the Activity objects of a namespace.\n" +
			"Without CONNECTION-ID the only conversation is printed; with several, they are listed and the " +
			"command fails. Each connector (and each run of one) numbers its conversations from c-000001: " +
			"--connector and --run choose among them.",
		Example: "  parley run -f rules.yaml -o json > log.json\n" +
			"  parley transcript log.json c-000002\n" +
			"  parley transcript --from-cluster -n decoys --connector redis-decoy c-000007",
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			o.cluster = o.cluster || f.Changed("kubeconfig") || f.Changed("namespace") || f.Changed("context") ||
				asPlugin() && o.file == "" // kubectl parley reads the cluster unless given a log with -f
			switch {
			case o.cluster && o.file != "":
				return errors.New("a log file and --from-cluster exclude each other")
			case !o.cluster && o.file == "" && len(args) == 0:
				return errors.New("no activities: name a JSON activity log (- for standard input), or read the cluster's with --from-cluster")
			case !o.cluster && o.file == "":
				o.file, args = args[0], args[1:]
			}
			if len(args) > 1 {
				return fmt.Errorf("one conversation at a time: got %q", args)
			}
			id := ""
			if len(args) == 1 {
				id = args[0]
			}
			return printTranscript(cmd, o, id)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "filename", "f", "", "JSON activity log, one activity per line as parley run -o json prints them (- for standard input)")
	f.StringVar(&o.connector, "connector", "", "the connector whose conversation to print, when several recorded one of that id")
	f.StringVar(&o.run, "run", "", "the run (a connector process) whose conversation to print, when several recorded one of that id")
	f.BoolVar(&o.cluster, "from-cluster", false, "read the Activity objects of the cluster instead of a log (kubectl parley does unless given -f); --kubeconfig, --context and -n imply it")
	addKubeFlags(f, &o.kube)
	return cmd
}

func printTranscript(cmd *cobra.Command, o transcriptOptions, id string) error {
	var entries []transcript.Entry
	var err error
	if o.cluster {
		c, cerr := kube.Connect(o.kube)
		if cerr != nil {
			return fmt.Errorf("reading the cluster's Activities: %w", cerr)
		}
		ns := c.Namespace
		entries, err = transcript.FromCluster(cmd.Context(), c, ns, o.connector, id)
		if err == nil && len(entries) == 0 {
			what := "Activities"
			if o.connector != "" {
				what += " of connector " + o.connector
			}
			if id != "" {
				what += " of connection " + id
			}
			return fmt.Errorf("no %s in namespace %s: none recorded, or not kept (the connector's spec.activities: record, maxCount, ttl)", what, ns)
		}
	} else {
		entries, err = readLog(cmd.InOrStdin(), o.file)
	}
	if err != nil {
		return err
	}
	conv, err := transcript.Pick(transcript.Conversations(entries), transcript.Choice{Connector: o.connector, Run: o.run, ID: id})
	var ce *transcript.ChoiceError
	if errors.As(err, &ce) && len(ce.Candidates) > 0 {
		if werr := transcript.WriteList(cmd.OutOrStdout(), ce.Candidates); werr != nil {
			return werr
		}
	}
	if err != nil {
		return err
	}
	return transcript.Write(cmd.OutOrStdout(), conv)
}

func readLog(stdin io.Reader, name string) ([]transcript.Entry, error) {
	if name == "-" {
		return transcript.ReadLog(stdin)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := transcript.ReadLog(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return entries, nil
}
