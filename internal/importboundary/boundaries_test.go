package importboundary

import (
	"errors"
	"fmt"
	"go/build"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/parley-dev/parley"

// rule forbids packages under from (a path relative to the module; "" is every package)
// to import, directly or not, any package under one of the forbidden paths. allow lists
// exceptions among the forbidden paths. A direct rule looks at direct imports only: the
// binary must link everything, but its own files only parse flags and call in.
type rule struct {
	from      string
	forbidden []string
	allow     []string
	direct    bool
	why       string
}

var rules = []rule{
	{from: "api", forbidden: []string{""}, allow: []string{"api"},
		why: "the API is the contract every side depends on; it depends on nothing of ours"},
	{from: "rules", forbidden: []string{""}, allow: []string{"rules", "api/v1alpha1", "internal/text"},
		why: "the rules language is shared by every side and knows only the API types (and the leaf text helpers)"},
	{from: "connector", forbidden: []string{"controllers", "engine", "internal/operator", "cmd"},
		why: "the connector (the data plane) talks to the engine over the channel in api/engine/v1 only"},
	{from: "engine", forbidden: []string{"controllers", "connector", "internal/operator", "cmd"},
		why: "the engine and the controllers share the API package, not each other"},
	{from: "controllers", forbidden: []string{"engine", "connector", "internal/operator", "cmd"},
		why: "the controllers and the engine share the API package, not each other"},
	{from: "admission", forbidden: []string{"controllers", "engine", "connector", "internal/operator", "cmd"}, allow: []string{"engine/pki"},
		why: "the webhook judges objects with the rules compiler and the API alone; of the engine it shares only the PKI package"},
	{from: "cmd", forbidden: []string{"controllers", "engine"}, direct: true,
		why: "cmd/parley is a thin CLI: the operator process is internal/operator, the pod process connector/pod"},
	{from: "internal/text", forbidden: []string{""}, why: "a leaf helper"},
	{from: "sink", forbidden: []string{""}, allow: []string{"sink", "api/v1alpha1", "evidence", "internal/text"},
		why: "delivery is fed by the engine and by parley run, and validates specs for the controller: it knows only the API and the evidence"},
	{from: "evidence", forbidden: []string{""}, allow: []string{"evidence", "api/v1alpha1"},
		why: "the connector chains activities, the engine and the sinks sign them, parley verify checks them: one definition that knows only the API"},
	{from: "internal/statusapply", forbidden: []string{""}, allow: []string{"api/v1alpha1"},
		why: "the controllers and the engine both write status with it: it knows only the API"},
}

type pkg struct {
	ImportPath string
	Imports    []string // direct
	Deps       []string // direct and indirect
}

// listPackages reads the module's packages in-process with go/build (so that the test
// cache notices an edited file, which it would not through a `go list` subprocess): every
// package with its direct imports and, computed here, everything it imports indirectly
// within the module. Tests' imports are left aside: a test may wire sides together.
func listPackages(t *testing.T) []pkg {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	direct := map[string][]string{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata") {
			return filepath.SkipDir
		}
		bp, err := build.Default.ImportDir(path, 0)
		var noGo *build.NoGoError
		if errors.As(err, &noGo) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		direct[module+"/"+filepath.ToSlash(rel)] = bp.Imports
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(direct) < 10 {
		t.Fatalf("found %d packages under %s; expected the whole module", len(direct), root)
	}
	var pkgs []pkg
	for path, imports := range direct {
		seen := map[string]bool{}
		var visit func(string)
		visit = func(p string) {
			for _, imp := range direct[p] {
				if !seen[imp] {
					seen[imp] = true
					visit(imp)
				}
			}
		}
		visit(path)
		deps := make([]string, 0, len(seen))
		for d := range seen {
			deps = append(deps, d)
		}
		sort.Strings(deps)
		pkgs = append(pkgs, pkg{ImportPath: path, Imports: imports, Deps: deps})
	}
	return pkgs
}

// under says whether the module-relative path p is prefix or below it ("" is everything).
func under(p, prefix string) bool {
	return prefix == "" || p == prefix || strings.HasPrefix(p, prefix+"/")
}

// violations lists "from imports dep" for every import a rule forbids.
func violations(pkgs []pkg, rules []rule) []string {
	var out []string
	for _, p := range pkgs {
		from, ok := strings.CutPrefix(p.ImportPath, module+"/")
		if !ok {
			continue
		}
		for _, r := range rules {
			if !under(from, r.from) {
				continue
			}
			deps := p.Deps
			if r.direct {
				deps = p.Imports
			}
			for _, d := range deps {
				dep, ok := strings.CutPrefix(d, module+"/")
				if !ok || under(dep, r.from) {
					continue // not ours, or the package's own subtree
				}
				if anyUnder(dep, r.forbidden) && !anyUnder(dep, r.allow) {
					out = append(out, from+" imports "+dep+": "+r.why)
				}
			}
		}
	}
	return out
}

func anyUnder(p string, prefixes []string) bool {
	for _, pre := range prefixes {
		if under(p, pre) {
			return true
		}
	}
	return false
}

func TestImportBoundaries(t *testing.T) {
	for _, v := range violations(listPackages(t), rules) {
		t.Error(v)
	}
}

// TestRulesCatchViolations makes sure the checker itself can fail: each forbidden edge is
// reported when it appears, and allowed edges are not.
func TestRulesCatchViolations(t *testing.T) {
	direct := func(from, dep string) []pkg {
		deps := []string{"fmt", module + "/" + dep}
		return []pkg{{ImportPath: module + "/" + from, Imports: deps, Deps: deps}}
	}
	for _, tc := range []struct{ from, dep string }{
		{"engine", "controllers"},
		{"engine/pki", "controllers"},
		{"connector", "engine"},
		{"connector/pod", "controllers"},
		{"connector/uplink", "engine/pki"},
		{"api/v1alpha1", "rules"},
		{"api/engine/v1", "internal/text"},
		{"rules", "connector"},
		{"cmd/parley", "controllers"},
		{"cmd/parley", "engine"},
		{"controllers", "engine"},
	} {
		if len(violations(direct(tc.from, tc.dep), rules)) == 0 {
			t.Errorf("%s importing %s was not reported", tc.from, tc.dep)
		}
	}
	for _, tc := range []struct{ from, dep string }{
		{"connector", "rules"},
		{"connector/uplink", "api/engine/v1"},
		{"rules/ops", "rules/value"},
		{"api/v1alpha1", "api/engine/v1"},
		{"internal/operator", "engine"},
		{"engine", "rules"},
	} {
		if v := violations(direct(tc.from, tc.dep), rules); len(v) != 0 {
			t.Errorf("allowed import reported: %v", v)
		}
	}
	// The CLI links the controllers through internal/operator, which is allowed.
	indirect := []pkg{{ImportPath: module + "/cmd/parley", Imports: []string{module + "/internal/operator"},
		Deps: []string{module + "/internal/operator", module + "/controllers", module + "/engine"}}}
	if v := violations(indirect, rules); len(v) != 0 {
		t.Errorf("indirect import through internal/operator reported: %v", v)
	}
}
