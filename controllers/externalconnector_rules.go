package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

// maxRulesErrors is how many compiler errors the RulesResolved message quotes; the
// ConversationRules' own Valid condition has them all.
const maxRulesErrors = 3

// Field indexes the connector controller looks things up by.
const (
	indexConnectorRules = "spec.rules"
	indexConnectorGroup = "spec.group"
	indexRulesGroup     = "spec.group"
)

// resolution is the outcome of looking up a connector's rules: a target when they resolve,
// else the reason and message of the RulesResolved condition.
type resolution struct {
	target *target
	// rules are the ConversationRules looked at, when there is one.
	rules   *v1alpha1.ConversationRules
	reason  string
	message string
}

// resolve finds the ConversationRules a connector runs (by name, or the one enabled and valid
// rules of its group) and compiles them with the connector's overrides.
func (r *ExternalConnectorReconciler) resolve(ctx context.Context, ec *v1alpha1.ExternalConnector) (resolution, error) {
	if ec.Spec.Rules != "" {
		var cr v1alpha1.ConversationRules
		err := r.Get(ctx, client.ObjectKey{Namespace: ec.Namespace, Name: ec.Spec.Rules}, &cr)
		if apierrors.IsNotFound(err) {
			return resolution{reason: v1alpha1.ReasonRulesNotFound,
				message: fmt.Sprintf("ConversationRules %q not found in namespace %s", ec.Spec.Rules, ec.Namespace)}, nil
		}
		if err != nil {
			return resolution{}, fmt.Errorf("get ConversationRules %s: %w", ec.Spec.Rules, err)
		}
		if !enabled(&cr) {
			return resolution{rules: &cr, reason: v1alpha1.ReasonRulesDisabled,
				message: fmt.Sprintf("ConversationRules %s is disabled (spec.enabled: false)", cr.Name)}, nil
		}
		t, errs := compileFor(ec, &cr)
		if len(errs) > 0 {
			return resolution{rules: &cr, reason: v1alpha1.ReasonRulesInvalid,
				message: fmt.Sprintf("ConversationRules %s is invalid: %s", cr.Name, firstErrors(errs))}, nil
		}
		return resolution{target: t, rules: &cr, reason: v1alpha1.ReasonResolved, message: resolvedMessage(t)}, nil
	}

	var list v1alpha1.ConversationRulesList
	if err := r.List(ctx, &list, client.InNamespace(ec.Namespace), client.MatchingFields{indexRulesGroup: ec.Spec.Group}); err != nil {
		return resolution{}, fmt.Errorf("list ConversationRules of group %s: %w", ec.Spec.Group, err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	var found []*target
	var foundRules []*v1alpha1.ConversationRules
	var names, skipped []string
	for i := range list.Items {
		cr := &list.Items[i]
		if !enabled(cr) {
			skipped = append(skipped, cr.Name+" (disabled)")
			continue
		}
		t, errs := compileFor(ec, cr)
		if len(errs) > 0 {
			skipped = append(skipped, cr.Name+" (invalid)")
			continue
		}
		found, foundRules = append(found, t), append(foundRules, cr)
		names = append(names, cr.Name)
	}
	switch len(found) {
	case 0:
		msg := fmt.Sprintf("no enabled and valid ConversationRules of group %q in namespace %s", ec.Spec.Group, ec.Namespace)
		if len(skipped) > 0 {
			msg += "; skipped: " + strings.Join(skipped, ", ")
		}
		return resolution{reason: v1alpha1.ReasonGroupNotFound, message: msg}, nil
	case 1:
		return resolution{target: found[0], rules: foundRules[0], reason: v1alpha1.ReasonResolved, message: resolvedMessage(found[0])}, nil
	default:
		return resolution{reason: v1alpha1.ReasonGroupAmbiguous, message: fmt.Sprintf(
			"%d enabled and valid ConversationRules have group %q: %s; disable all but one, or name the rules in spec.rules",
			len(found), ec.Spec.Group, strings.Join(names, ", "))}, nil
	}
}

func enabled(cr *v1alpha1.ConversationRules) bool {
	return cr.Spec.Enabled == nil || *cr.Spec.Enabled
}

// compileFor compiles the rules as the connector runs them: with its port and ip overrides,
// so that rules without a port (or a client target) can serve as templates for connectors.
func compileFor(ec *v1alpha1.ExternalConnector, cr *v1alpha1.ConversationRules) (*target, field.ErrorList) {
	p, errs := rules.CompileEffective(cr.Name, cr.Generation, &cr.Spec, ec.Spec.Overrides())
	if len(errs) > 0 {
		return nil, errs
	}
	return &target{
		rules:     p.Ref,
		mode:      p.Mode,
		transport: p.Transport,
		ip:        p.IP,
		port:      int32(p.Port),
	}, nil
}

func resolvedMessage(t *target) string {
	return fmt.Sprintf("ConversationRules %s (generation %d): %s %s port %d",
		t.rules.Name, t.rules.Generation, t.mode, t.transport, t.port)
}

// firstErrors quotes the first few compiler errors.
func firstErrors(errs field.ErrorList) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d error(s): ", len(errs))
	for i, e := range errs {
		if i == maxRulesErrors {
			fmt.Fprintf(&b, "; and %d more (see its Valid condition)", len(errs)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}
