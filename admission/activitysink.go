package admission

import (
	"context"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/sink"
)

// ActivitySinkValidator refuses ActivitySinks that cannot work: what sink.Validate finds,
// as the controller's Ready condition and `parley check` say it. Secrets that do not exist
// yet are not its business: a sink and its Secret may be applied in any order, and Ready
// says what is missing.
type ActivitySinkValidator struct{}

var _ admission.Validator[*v1alpha1.ActivitySink] = ActivitySinkValidator{}

// ValidateCreate refuses a sink that cannot work, with every reason.
func (ActivitySinkValidator) ValidateCreate(_ context.Context, s *v1alpha1.ActivitySink) (admission.Warnings, error) {
	return nil, refuseActivitySink(s)
}

// ValidateUpdate refuses a changed spec that cannot work; an unchanged spec passes, so that
// a sink stored before the webhook can still be relabelled and deleted.
func (ActivitySinkValidator) ValidateUpdate(_ context.Context, old, s *v1alpha1.ActivitySink) (admission.Warnings, error) {
	if apiequality.Semantic.DeepEqual(old.Spec, s.Spec) {
		return nil, nil
	}
	return nil, refuseActivitySink(s)
}

// ValidateDelete never refuses.
func (ActivitySinkValidator) ValidateDelete(context.Context, *v1alpha1.ActivitySink) (admission.Warnings, error) {
	return nil, nil
}

func refuseActivitySink(s *v1alpha1.ActivitySink) error {
	if errs := CheckActivitySink(&s.Spec); len(errs) > 0 {
		return apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind("ActivitySink").GroupKind(), s.Name, errs)
	}
	return nil
}

// CheckActivitySink is every reason an ActivitySink's spec cannot work, with its field path.
func CheckActivitySink(spec *v1alpha1.ActivitySinkSpec) field.ErrorList {
	return sink.Validate(spec, field.NewPath("spec"))
}
