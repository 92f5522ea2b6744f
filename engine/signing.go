package engine

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/evidence"
)

// Keys of the evidence signing Secret.
const (
	SigningKeyKey    = "signing.key" // PEM PKCS #8 Ed25519 private key
	SigningPubKeyKey = "signing.pub" // PEM PKIX public key, for parley verify --key
)

// SigningKey returns the Ed25519 key in Secret ns/name, creating the Secret with a new key
// when it does not exist: every replica signs with the same key, and whichever creates it
// first wins (the others read it back).
func SigningKey(ctx context.Context, c client.Client, reader client.Reader, ns, name string) (ed25519.PrivateKey, error) {
	for range 2 {
		var sec corev1.Secret
		err := reader.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &sec)
		switch {
		case err == nil:
			return parseSigningKey(sec.Data[SigningKeyKey], ns, name)
		case !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("read the evidence signing Secret %s/%s: %w", ns, name, err)
		}
		pub, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		sec = corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			Labels: map[string]string{"app.kubernetes.io/name": "parley", "app.kubernetes.io/component": "evidence"}},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{SigningKeyKey: evidence.MarshalPrivateKey(key), SigningPubKeyKey: evidence.MarshalPublicKey(pub)}}
		err = c.Create(ctx, &sec)
		switch {
		case err == nil:
			return key, nil
		case !apierrors.IsAlreadyExists(err):
			return nil, fmt.Errorf("create the evidence signing Secret %s/%s: %w", ns, name, err)
		}
		// Another replica made it meanwhile: read theirs.
	}
	return nil, fmt.Errorf("the evidence signing Secret %s/%s is created and gone again", ns, name)
}

func parseSigningKey(raw []byte, ns, name string) (ed25519.PrivateKey, error) {
	key, err := evidence.ParsePrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("evidence signing Secret %s/%s, key %s: %w", ns, name, SigningKeyKey, err)
	}
	return key, nil
}

// checkpointLoop logs the checkpoints the interval makes due while activities are quiet,
// and forgets the chains of processes long quiet (ended, mostly), until ctx ends.
func (e *Engine) checkpointLoop(ctx context.Context) {
	t := time.NewTicker(e.signer.Interval() / 4)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			cps := e.signer.Due(false)
			e.logCheckpoints("", cps)
			for _, cp := range cps {
				if key, ok := e.chains.Load(cp.Chain); ok {
					if ec := e.cached(ctx, key.(types.NamespacedName)); ec != nil {
						e.offerCheckpoints(ec, []*evidence.Checkpoint{cp})
					}
				}
			}
			e.signer.Prune(func(chain string) { e.chains.Delete(chain) })
		case <-ctx.Done():
			return
		}
	}
}

// logCheckpoints writes each checkpoint as a line of the activity log, beside the
// activities it covers: {"checkpoint": {...}} as parley verify reads it.
func (e *Engine) logCheckpoints(namespace string, cps []*evidence.Checkpoint) {
	for _, cp := range cps {
		if namespace != "" {
			e.activityLog.Info("checkpoint", "namespace", namespace, "checkpoint", cp)
		} else {
			e.activityLog.Info("checkpoint", "checkpoint", cp)
		}
	}
}

// noteChain remembers the connector of the chain of rec (a connector process has one),
// for the sinks of the checkpoints checkpointLoop signs while it is quiet. Called after the
// signer observed rec, so that Prune, which forgets the note with the signer's head, never
// forgets it for a chain the signer still follows.
func (e *Engine) noteChain(rec *v1alpha1.ActivityRecord, connector types.NamespacedName) {
	if rec.Evidence == nil {
		return
	}
	if _, ok := e.chains.Load(rec.Evidence.Chain); !ok {
		e.chains.Store(rec.Evidence.Chain, connector)
	}
}
