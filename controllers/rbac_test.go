package controllers_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The manager of this suite is not an administrator: what the generated ClusterRole does not
// grant is refused. (Every other test shows that what it grants is enough.)
func TestOperatorRunsWithTheGeneratedClusterRoleOnly(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "rbac-"}}
	if err := operator.Create(context.Background(), ns); !apierrors.IsForbidden(err) {
		t.Errorf("creating a namespace as the operator: %v, want Forbidden", err)
	}
	var nodes corev1.NodeList
	if err := operator.List(context.Background(), &nodes); !apierrors.IsForbidden(err) {
		t.Errorf("listing nodes as the operator: %v, want Forbidden", err)
	}
}
