package controllers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// caRetry is how soon a connector is reconciled again while the engine's CA is not loaded:
// a reconcile never waits for it.
const caRetry = 2 * time.Second

// ensureSecret makes the connector's engine Secret with a random token, once (an existing
// token is never replaced), and keeps the engine's CA and the shared-memory store (URL,
// password, CA: Defaults.SharedMemory, as it is now) in it. The store reaches the pod through this
// Secret, mounted as files, so that its password is never in the pod spec. It reports whether the CA is
// still to come: the engine has one, not loaded yet; what else the Secret needs is written
// meanwhile.
func (r *ExternalConnectorReconciler) ensureSecret(ctx context.Context, ec *v1alpha1.ExternalConnector) (caPending bool, err error) {
	ca, caPending := r.engineCA()
	shared := r.Defaults.SharedMemory.Get().secretData() // once: it may change meanwhile
	name := v1alpha1.EngineSecretName(ec.Name)
	var s corev1.Secret
	err = r.APIReader.Get(ctx, client.ObjectKey{Namespace: ec.Namespace, Name: name}, &s)
	if apierrors.IsNotFound(err) {
		token, err := newToken()
		if err != nil {
			return caPending, err
		}
		s = corev1.Secret{
			ObjectMeta: objectMeta(ec, name),
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{v1alpha1.TokenKey: token},
		}
		if len(ca) > 0 {
			s.Data[v1alpha1.EngineCAKey] = ca
		}
		maps.Copy(s.Data, shared)
		if err := r.Create(ctx, &s); err != nil {
			return caPending, fmt.Errorf("create Secret %s: %w", name, err)
		}
		r.event(ec, &s, corev1.EventTypeNormal, v1alpha1.ReasonCreated, "Create", fmt.Sprintf("created Secret %s with the connector's engine token", name))
		return caPending, nil
	}
	if err != nil {
		return caPending, fmt.Errorf("get Secret %s: %w", name, err)
	}
	if err := checkController(ec, &s, "Secret"); err != nil {
		return caPending, err
	}
	patch := client.MergeFrom(s.DeepCopy())
	changed := false
	if !isControlledBy(&s, ec) {
		s.OwnerReferences = append(s.OwnerReferences, controllerRef(ec))
		changed = true
	}
	for k, v := range v1alpha1.ConnectorLabels(ec.Name) {
		if s.Labels[k] != v {
			if s.Labels == nil {
				s.Labels = map[string]string{}
			}
			s.Labels[k], changed = v, true
		}
	}
	if len(s.Data[v1alpha1.TokenKey]) == 0 {
		token, err := newToken()
		if err != nil {
			return caPending, err
		}
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		s.Data[v1alpha1.TokenKey], changed = token, true
		r.event(ec, &s, corev1.EventTypeNormal, v1alpha1.ReasonCreated, "Update", fmt.Sprintf("Secret %s had no token: generated one", name))
	}
	// The CA follows the engine's: a connector must trust the engine it dials.
	if len(ca) > 0 && !bytes.Equal(s.Data[v1alpha1.EngineCAKey], ca) {
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		s.Data[v1alpha1.EngineCAKey], changed = ca, true
	}
	if syncSharedMemory(&s, shared) {
		changed = true
	}
	if !changed {
		return caPending, nil
	}
	if err := r.Patch(ctx, &s, patch); err != nil {
		return caPending, fmt.Errorf("patch Secret %s: %w", name, err)
	}
	return caPending, nil
}

// syncSharedMemory makes the shared-memory keys of s what want says, removing those the
// operator no longer has (a store turned off), and reports whether it changed anything.
func syncSharedMemory(s *corev1.Secret, want map[string][]byte) bool {
	changed := false
	for _, k := range []string{v1alpha1.SharedMemoryURLKey, v1alpha1.SharedMemoryPasswordKey, v1alpha1.SharedMemoryCAKey} {
		v, wanted := want[k]
		old, has := s.Data[k]
		switch {
		case wanted && (!has || !bytes.Equal(old, v)):
			if s.Data == nil {
				s.Data = map[string][]byte{}
			}
			s.Data[k], changed = v, true
		case !wanted && has:
			delete(s.Data, k)
			changed = true
		}
	}
	return changed
}

// engineCA returns the engine's CA, without waiting for it, and whether it is still to come:
// the engine has one (Defaults.EngineCA is set) but has not loaded it yet.
func (r *ExternalConnectorReconciler) engineCA() (ca []byte, pending bool) {
	if r.Defaults.EngineCA == nil {
		return nil, false
	}
	ca = r.Defaults.EngineCA()
	return ca, len(ca) == 0
}

// newToken is 32 random bytes, hex encoded.
func newToken() ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("generate an engine token: %w", err)
	}
	return []byte(hex.EncodeToString(b)), nil
}
