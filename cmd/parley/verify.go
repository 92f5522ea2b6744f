package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/parley-dev/parley/evidence"
)

func newVerifyCommand() *cobra.Command {
	var (
		keyFile   string
		allowGaps bool
	)
	cmd := &cobra.Command{
		Use:   "verify --key PUBLIC.pem [FILE|-]...",
		Short: "Check signed activities: the verified range, gaps, reordering and altered records; exit 1 on tampering",
		Long: "Check the evidence of activities against the Ed25519 public key that signed their checkpoints " +
			"(docs/evidence.md). Input: a JSON activity log (parley run -o json or --log-file, with --sign-key), a sink's " +
			"output, or kubectl get activities -o json, from files or standard input (-, the default). Prints each " +
			"chain's range, what is signed, every gap and every problem. Exits 1 when a record was altered, inserted " +
			"or reordered, a checkpoint does not verify, or (unless --allow-gaps) records are missing; 2 when the " +
			"input or the key cannot be read.",
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyFile == "" {
				return &exitError{code: 2, err: errors.New("--key: the public key that signed the checkpoints is required")}
			}
			pub, err := evidence.ReadPublicKey(keyFile)
			if err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--key: %w", err)}
			}
			if len(args) == 0 {
				args = []string{"-"}
			}
			readers := make([]io.Reader, 0, len(args))
			for _, a := range args {
				if a == "-" {
					readers = append(readers, cmd.InOrStdin())
					continue
				}
				f, err := os.Open(a)
				if err != nil {
					return &exitError{code: 2, err: err}
				}
				defer f.Close()
				readers = append(readers, f)
			}
			report, err := evidence.Verify(io.MultiReader(readers...), pub)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if err := evidence.WriteReport(cmd.OutOrStdout(), report); err != nil {
				return err
			}
			switch {
			case report.Tampered():
				return fmt.Errorf("%w: %d problem(s)", evidence.ErrTampered, len(report.Problems))
			case report.Gaps() > 0 && !allowGaps:
				return fmt.Errorf("%d gap(s) of missing records (--allow-gaps accepts them, e.g. for a sink with a filter)", report.Gaps())
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "key", "", "PEM Ed25519 public key (PKIX, as openssl pkey -pubout writes it); a private key file works too")
	cmd.Flags().BoolVar(&allowGaps, "allow-gaps", false, "accept missing records: a filtered sink (alertsOnly, types) or spec.activities.record: Alerts")
	return cmd
}
