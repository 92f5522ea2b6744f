// Command parley is Parley's one binary: the operator, the connector, and the standalone
// tools (run, check).
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "parley:", err)
		os.Exit(exitCode(err))
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "parley",
		Short: "Rule-driven network conversations: decoys, virtual services, scripted clients",
		Long: "Parley holds rule-driven conversations with third parties over TCP and UDP, as a " +
			"server or a client, and records every activity.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       parleyVersion(),
	}
	if asPlugin() {
		root.Use = "kubectl parley"
	}
	root.AddCommand(newRunCommand(), newCheckCommand(), newOperatorCommand(), newImportCommand(), newConnectorCommand(),
		newTailCommand(), newTranscriptCommand(), newVerifyCommand())
	return root
}

// version is what --version prints and connectors say to the engine in Hello; release
// builds set it with -ldflags -X main.version=...
var version = ""

func parleyVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	return 1
}
