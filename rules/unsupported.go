package rules

import (
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// unsupported refuses the API's fields that this version of the runtime does not carry out
// yet, with their field paths, so a spec never silently means less than it says. Each check
// goes away when its feature lands.
func (c *compiler) unsupported() {
	const why = "not supported by this version of Parley"
	op := &c.spec.Operation
	path := c.root.Child("operation")
	if op.Framing != nil {
		c.add(field.Forbidden(path.Child("framing"), why))
	}
	if op.StartWhen != nil {
		c.add(field.Forbidden(path.Child("startWhen"), why))
	}
	mem := c.root.Child("memory")
	if c.spec.Memory.Space != "" {
		c.add(field.Forbidden(mem.Child("space"), why))
	}
	if c.spec.Memory.SharedInit != "" {
		c.add(field.Forbidden(mem.Child("sharedInit"), why))
	}
	if len(c.spec.Memory.Shared) > 0 {
		c.add(field.Forbidden(mem.Child("shared"), why))
	}
	conv := c.root.Child("conversation")
	check := func(path *field.Path, rs []v1alpha1.Rule) {
		for i := range rs {
			r, rp := &rs[i], path.Index(i)
			if r.Framing != nil {
				c.add(field.Forbidden(rp.Child("framing"), why))
			}
		}
	}
	check(conv.Child("rules"), c.spec.Conversation.Rules)
	for i, g := range c.spec.Conversation.Groups {
		check(conv.Child("groups").Index(i).Child("rules"), g.Rules)
	}
}
