package controllers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/controllers"
)

// engineCA stands in for the engine's CA: loaded from the start unless a test unloads it.
var engineCA = &fakeCA{pem: []byte("-----BEGIN CERTIFICATE-----\ntest CA\n-----END CERTIFICATE-----\n")}

func init() { testDefaults.EngineCA = engineCA.get }

type fakeCA struct {
	mu  sync.Mutex
	pem []byte
}

// get returns the CA as the engine does: at once, nil while it is not loaded.
func (f *fakeCA) get() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.pem)
}

func (f *fakeCA) set(pem []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pem = pem
}

// discard is an event recorder that records nothing.
type discard struct{}

func (discard) Eventf(runtime.Object, runtime.Object, string, string, string, string, ...any) {}

// A connector made before the engine has loaded its CA gets everything else at once, and the
// CA when it loads: the reconcile comes back for it instead of waiting for it.
func TestEngineSecretGetsTheCAWhenItLoads(t *testing.T) {
	ns := namespace(t)
	loaded := engineCA.get()
	engineCA.set(nil)
	t.Cleanup(func() { engineCA.set(loaded) })

	createRules(t, ns, "r", serverRules)
	createConnector(t, ns, "early", `{rules: r}`)
	connectorWhen(t, ns, "early", "resolved and Pending", func(ec *v1alpha1.ExternalConnector) error {
		if err := hasCondition(ec, "RulesResolved", metav1.ConditionTrue, "Resolved"); err != nil {
			return err
		}
		return hasCondition(ec, "Ready", metav1.ConditionFalse, "ReplicasNotReady")
	})
	get(t, ns, "early", &appsv1.Deployment{})
	get(t, ns, "early", &corev1.Service{})
	var secret corev1.Secret
	get(t, ns, "early-engine", &secret)
	if len(secret.Data["token"]) == 0 {
		t.Errorf("no token in the Secret: %v", secret.Data)
	}
	if ca, ok := secret.Data["ca.crt"]; ok {
		t.Errorf("a CA in the Secret before the engine loaded one: %q", ca)
	}

	// A reconcile now asks to come back for the CA, and has written everything else.
	r := &controllers.ExternalConnectorReconciler{Client: operator, APIReader: operator, Recorder: discard{}, Defaults: testDefaults}
	req := ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "early"}}
	res, err := r.Reconcile(context.Background(), req)
	if err != nil || res.RequeueAfter <= 0 {
		t.Errorf("reconcile while the CA is not loaded: %+v, %v; want a requeue after a delay and no error", res, err)
	}

	// The CA loads, with no change in the cluster to bring a reconcile: the requeue brings
	// it to the Secret.
	ca := []byte("-----BEGIN CERTIFICATE-----\nloaded late\n-----END CERTIFICATE-----\n")
	engineCA.set(ca)
	eventually(t, "the CA in the Secret", func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(&secret), &secret); err != nil {
			return err
		}
		if !bytes.Equal(secret.Data["ca.crt"], ca) {
			return fmt.Errorf("ca.crt %q", secret.Data["ca.crt"])
		}
		return nil
	})
	res, err = r.Reconcile(context.Background(), req)
	if err != nil || !res.IsZero() {
		t.Errorf("reconcile with the CA loaded: %+v, %v; want no requeue and no error", res, err)
	}
}

// sharedMemory is the store every connector of the suite is handed.
var sharedMemory = controllers.SharedMemory{
	URL:      "rediss://redis.parley-system.svc:6379/0",
	Password: []byte("s3cret-password"),
	CA:       []byte("-----BEGIN CERTIFICATE-----\nredis CA\n-----END CERTIFICATE-----\n"),
}

func init() { testDefaults.SharedMemory = controllers.NewLiveSharedMemory(sharedMemory) }

// The shared-memory store reaches a connector through its own engine Secret (URL, password,
// CA), never through the pod spec; a key changed by hand is put back.
func TestEngineSecretCarriesTheSharedMemoryStore(t *testing.T) {
	ns := namespace(t)
	createRules(t, ns, "r", serverRules)
	createConnector(t, ns, "shared", `{rules: r}`)
	var secret corev1.Secret
	want := map[string][]byte{
		v1alpha1.SharedMemoryURLKey:      []byte(sharedMemory.URL),
		v1alpha1.SharedMemoryPasswordKey: sharedMemory.Password,
		v1alpha1.SharedMemoryCAKey:       sharedMemory.CA,
	}
	hasStore := func() error {
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "shared-engine"}, &secret); err != nil {
			return err
		}
		for k, v := range want {
			if !bytes.Equal(secret.Data[k], v) {
				return fmt.Errorf("%s is %q, want %q", k, secret.Data[k], v)
			}
		}
		return nil
	}
	eventually(t, "the store in the Secret", hasStore)

	var d appsv1.Deployment
	get(t, ns, "shared", &d)
	spec, err := json.Marshal(d.Spec.Template)
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{string(sharedMemory.Password), "redis.parley-system.svc"} {
		if strings.Contains(string(spec), leak) {
			t.Errorf("the pod template holds %q: %s", leak, spec)
		}
	}

	patch := client.MergeFrom(secret.DeepCopy())
	secret.Data[v1alpha1.SharedMemoryURLKey] = []byte("redis://elsewhere:6379")
	delete(secret.Data, v1alpha1.SharedMemoryPasswordKey)
	if err := k8s.Patch(context.Background(), &secret, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the store put back in the Secret", hasStore)
}
