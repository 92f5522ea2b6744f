package rulesfile

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzRead holds the reader to kubectl's on any input: the same documents, cut at the same
// lines; whatever was accepted reads the same (or is refused only for a YAML 1.1 word in a
// string field); whatever was refused is refused; no panic, and positions inside the input.
// Seeds: testdata/fuzz/FuzzRead (tricky and hostile YAML) and the examples.
//
//	go test -run '^$' -fuzz FuzzRead -parallel 1 ./internal/rulesfile/
func FuzzRead(f *testing.F) {
	examples, err := filepath.Glob(filepath.Join("..", "..", "examples", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range examples {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 16<<10 {
			return // big inputs slow the search (minimizing them most) without reaching new code
		}
		checkSplit(t, data)
		sameAsBefore(t, "fuzz.yaml", data)
	})
}
