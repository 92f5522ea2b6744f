// Package statusapply writes an ExternalConnector's status by server-side apply, one writer's
// fields at a time. The controller and the engine each own part of the status (see
// ExternalConnectorStatus): each applies only its own fields under its own field manager, so
// that neither can reset the other's and neither needs the other's latest resourceVersion.
package statusapply

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// Fields are status fields by their JSON name, their values in the API's JSON form: a string,
// an int64, or a map as Object makes it from a struct. A field a writer owns and leaves out of its next apply is removed:
// each apply carries every field its writer owns, zero values included where they mean
// something.
type Fields map[string]any

// Apply server-side applies fields to ec's status as owner, taking over those fields from
// any other manager (an earlier version's client-side writes), and reads the object the API
// server returns into ec. Conditions are a map keyed by type: each writer owns the entries
// it applies.
func Apply(ctx context.Context, c client.StatusClient, ec *v1alpha1.ExternalConnector, owner client.FieldOwner, fields Fields) error {
	var got v1alpha1.ExternalConnector
	if err := ApplyKind(ctx, c, "ExternalConnector", ec.Namespace, ec.Name, &got, owner, fields); err != nil {
		return err
	}
	*ec = got
	return nil
}

// ApplyKind is Apply for any kind of this API with a status subresource (ActivitySink's
// status has the same two writers), reading the object the API server returns into into.
func ApplyKind(ctx context.Context, c client.StatusClient, kind, namespace, name string, into any, owner client.FieldOwner, fields Fields) error {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       kind,
		"metadata":   map[string]any{"name": name, "namespace": namespace},
		"status":     map[string]any(fields),
	}}
	if err := c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), owner, client.ForceOwnership); err != nil {
		return err
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		return fmt.Errorf("read back %s %s/%s: %w", kind, namespace, name, err)
	}
	return nil
}

// Conditions are the conditions of the given types among conds, in the API's JSON form.
func Conditions(conds []metav1.Condition, types ...string) ([]any, error) {
	out := []any{}
	for _, typ := range types {
		for i := range conds {
			if conds[i].Type != typ {
				continue
			}
			v, err := Object(&conds[i])
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
	}
	return out, nil
}

// Object is the struct obj points to in the API's JSON form.
func Object(obj any) (map[string]any, error) {
	return runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
}
