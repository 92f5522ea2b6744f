package main

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/rulesfile"
	"github.com/parley-dev/parley/rules"
)

// compileDocument compiles one document and says what is wrong with it, as `parley check`
// and `parley run` print it: errors in the spec's order with each rule's id beside its index,
// then warnings, marked as such.
func compileDocument(d *rulesfile.Document) (prog *rules.Program, errs, warnings []string) {
	prefix := d.Source + ": " + d.Name() + ": "
	prog, ferrs := rules.Compile(d.Name(), d.Rules.Generation, &d.Rules.Spec)
	rules.SortFieldErrors(ferrs)
	for _, e := range ferrs {
		errs = append(errs, prefix+rules.Annotate(&d.Rules.Spec, e.Field)+": "+e.ErrorBody())
	}
	if prog == nil {
		return nil, errs, nil
	}
	for _, w := range rules.Lint(&d.Rules.Spec, prog) {
		warnings = append(warnings, prefix+"warning: "+rules.Annotate(&d.Rules.Spec, w.Field)+": "+w.Message)
	}
	return prog, errs, warnings
}

// documentWarnings are what holds between documents, or of their metadata, that the
// cluster refuses or that cannot run side by side: names the API server does not take,
// names used twice, two servers on one port.
func documentWarnings(docs []rulesfile.Document, progs map[int]*rules.Program) []string {
	var out []string
	seen := map[string]string{}
	type listener struct {
		source string
		ip     string
	}
	ports := map[string][]listener{}
	for i := range docs {
		d := &docs[i]
		switch name := d.Rules.Name; {
		case name == "":
			out = append(out, d.Source+": warning: metadata.name: Required value: the cluster refuses rules without a name")
		case len(validation.IsDNS1123Subdomain(name)) > 0:
			out = append(out, fmt.Sprintf("%s: warning: metadata.name: Invalid value: %q: the cluster refuses it: %s", d.Source, name,
				strings.Join(validation.IsDNS1123Subdomain(name), "; ")))
		default:
			key := d.Rules.Namespace + "/" + name
			if first, ok := seen[key]; ok {
				out = append(out, fmt.Sprintf("%s: warning: metadata.name: Duplicate value: %q: also %s; in one namespace of the cluster one replaces the other", d.Source, name, first))
			} else {
				seen[key] = d.Source
			}
		}
		p := progs[i]
		if p == nil || p.Mode != v1alpha1.ModeServer {
			continue
		}
		key := fmt.Sprintf("%s/%d", p.Transport, p.Port)
		for _, l := range ports[key] {
			if l.ip == "" || p.IP == "" || l.ip == p.IP {
				out = append(out, fmt.Sprintf("%s: %s: warning: spec.operation.port: %d/%s is also where %s listens: both cannot run on one host (parley run fails to bind the second)",
					d.Source, d.Name(), p.Port, p.Transport, l.source))
				break
			}
		}
		ports[key] = append(ports[key], listener{source: d.Source, ip: p.IP})
	}
	return out
}
