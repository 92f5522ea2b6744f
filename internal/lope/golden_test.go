package lope

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parley-dev/parley/internal/rulesfile"
	"github.com/parley-dev/parley/rules"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml and *.issues.golden")

// TestGolden converts every primary Lope file of testdata and compares the YAML with
// NAME.golden.yaml and the report with NAME.issues.golden. Each output must also read back
// as ConversationRules (strictly, as parley check reads them) and compile.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yml")
		t.Run(name, func(t *testing.T) {
			res, err := Convert(f)
			if err != nil {
				t.Fatal(err)
			}
			out, err := Marshal(&res.Rules)
			if err != nil {
				t.Fatal(err)
			}
			compareGolden(t, strings.TrimSuffix(f, ".yml")+".golden.yaml", out)
			compareGolden(t, strings.TrimSuffix(f, ".yml")+".issues.golden", []byte(report(res)))

			docs, _, err := rulesfile.Read(f, bytes.NewReader(out))
			if err != nil || len(docs) != 1 {
				t.Fatalf("output does not read back as one ConversationRules: %v", err)
			}
			if _, errs := rules.Compile(docs[0].Name(), 1, &docs[0].Rules.Spec); len(errs) > 0 {
				t.Fatalf("output does not compile: %v", errs.ToAggregate())
			}
			for _, d := range res.Dropped {
				if strings.HasPrefix(d.Path, "spec.") {
					t.Errorf("the compiler refused what the converter kept: %s", d)
				}
			}
		})
	}
}

func report(res *Result) string {
	var b strings.Builder
	for _, d := range res.Dropped {
		fmt.Fprintf(&b, "dropped: %s\n", d)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	return b.String()
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/lope -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./internal/lope -update rewrites it); got:\n%s", path, got)
	}
}
