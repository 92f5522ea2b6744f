package admission

import (
	"context"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

// RulesValidator refuses ConversationRules that do not compile.
type RulesValidator struct{}

var _ admission.Validator[*v1alpha1.ConversationRules] = RulesValidator{}

// ValidateCreate refuses rules that do not compile, with every error.
func (RulesValidator) ValidateCreate(_ context.Context, cr *v1alpha1.ConversationRules) (admission.Warnings, error) {
	return refuseRules(cr)
}

// ValidateUpdate refuses a changed spec that does not compile. An unchanged spec passes:
// rules stored before the webhook keep their Valid condition and can still be labelled or
// deleted.
func (RulesValidator) ValidateUpdate(_ context.Context, old, cr *v1alpha1.ConversationRules) (admission.Warnings, error) {
	if apiequality.Semantic.DeepEqual(old.Spec, cr.Spec) {
		return nil, nil
	}
	return refuseRules(cr)
}

// ValidateDelete never refuses (the webhook is not even asked: its rules name CREATE and
// UPDATE only).
func (RulesValidator) ValidateDelete(context.Context, *v1alpha1.ConversationRules) (admission.Warnings, error) {
	return nil, nil
}

// refuseRules is the answer for rules: an Invalid error with every cause, or the lint
// warnings.
func refuseRules(cr *v1alpha1.ConversationRules) (admission.Warnings, error) {
	errs, warnings := CheckRules(&cr.Spec)
	if len(errs) > 0 {
		return warnings, apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind("ConversationRules").GroupKind(), cr.Name, errs)
	}
	return warnings, nil
}

// CheckRules compiles spec as `parley check` does and says what is wrong with it in the
// same words: every compile error, ordered as the fields stand in the spec, its field path
// naming each rule's id beside its index (spec.conversation.rules[3] (id 7).regex); then,
// when it compiles, its lint warnings as "<path>: <message>".
func CheckRules(spec *v1alpha1.ConversationRulesSpec) (field.ErrorList, []string) {
	prog, errs := rules.Compile("", 0, spec)
	if len(errs) > 0 {
		rules.SortFieldErrors(errs)
		out := make(field.ErrorList, 0, len(errs))
		for _, e := range errs {
			annotated := *e
			annotated.Field = rules.Annotate(spec, e.Field)
			out = append(out, &annotated)
		}
		return out, nil
	}
	var warnings []string
	for _, w := range rules.Lint(spec, prog) {
		warnings = append(warnings, rules.Annotate(spec, w.Field)+": "+w.Message)
	}
	return nil, warnings
}
