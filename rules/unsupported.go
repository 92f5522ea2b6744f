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
	if op.Transform != nil {
		c.add(field.Forbidden(path.Child("transform"), why))
	}
	if op.StartWhen != nil && op.StartWhen.When != "" {
		c.add(field.Forbidden(path.Child("startWhen", "when"), why+" (CEL); use conditions"))
	}
	conv := c.root.Child("conversation")
	check := func(path *field.Path, rs []v1alpha1.Rule) {
		for i := range rs {
			r, rp := &rs[i], path.Index(i)
			if r.When != "" {
				c.add(field.Forbidden(rp.Child("when"), why))
			}
			for j, u := range r.Updates {
				if u.Expr != "" {
					c.add(field.Forbidden(rp.Child("updates").Index(j).Child("expr"), why))
				}
			}
		}
	}
	check(conv.Child("rules"), c.spec.Conversation.Rules)
	for i, g := range c.spec.Conversation.Groups {
		check(conv.Child("groups").Index(i).Child("rules"), g.Rules)
	}
}
