package lope

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestEveryLopeFieldUsed keeps the testdata honest: every field of the Lope format this
// package reads appears as a key in at least one testdata file.
func TestEveryLopeFieldUsed(t *testing.T) {
	var text strings.Builder
	err := filepath.Walk("testdata", func(path string, info os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(path, ".yml") {
			b, rerr := os.ReadFile(path)
			text.Write(b)
			return rerr
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]bool{}
	collectFields(reflect.TypeOf(file{}), fields, map[reflect.Type]bool{})
	collectFields(reflect.TypeOf(auxFile{}), fields, map[reflect.Type]bool{})
	var missing []string
	for f := range fields {
		if !regexp.MustCompile(`(?m)(^|[\s{,])` + regexp.QuoteMeta(f) + `:`).MatchString(text.String()) {
			missing = append(missing, f)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("Lope fields no testdata file uses: %v", missing)
	}
	if len(fields) < 100 {
		t.Errorf("only %d fields found; the walk is broken", len(fields))
	}
}

func collectFields(t reflect.Type, into map[string]bool, seen map[reflect.Type]bool) {
	for t.Kind() == reflect.Ptr || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return
	}
	seen[t] = true
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" {
			continue
		}
		into[name] = true
		collectFields(f.Type, into, seen)
	}
}
