package operator_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/controllers"
	"github.com/parley-dev/parley/internal/envtestutil"
	"github.com/parley-dev/parley/internal/operator"
	"github.com/parley-dev/parley/internal/volumetest"
)

// caPEM is a CA certificate made for the test.
func caPEM(t *testing.T, name string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// filesValid is the gauge parley_operator_shared_memory_files_valid.
func filesValid(t *testing.T) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "parley_operator_shared_memory_files_valid" && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("parley_operator_shared_memory_files_valid not registered")
	return 0
}

// startOperator runs the operator's reconcilers with the store of o, kept in step with its
// files as `parley operator` does, as the operator's identity, until the test ends.
func startOperator(t *testing.T, o operator.Options) {
	t.Helper()
	scheme := testScheme()
	skip := true // the controllers' names are taken once per process otherwise (-count)
	mgr, err := ctrl.NewManager(operatorCfg, ctrl.Options{
		Scheme:     scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Cache:      controllers.CacheOptions(),
		Controller: config.Controller{SkipNameValidation: &skip},
	})
	if err != nil {
		t.Fatal(err)
	}
	w, err := operator.NewSharedMemoryWatch(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := controllers.Setup(mgr, controllers.Defaults{ConnectorImage: "parley:test", EngineAddress: "engine:9443", SharedMemory: w.Live()}); err != nil {
		t.Fatal(err)
	}
	if err := mgr.Add(w); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("manager: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-stopped })
}

// testScheme knows Kubernetes' kinds and Parley's.
func testScheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	return scheme
}

// Rotating the store's password, as the kubelet updates the operator's mounted Secret (a
// symlink swap in its folder, nothing written in place): every connector's engine Secret
// gets the new one, without a restart. A file that becomes unusable keeps the last valid
// password in the Secrets, new connectors included, and says so in a metric; the CA file
// (a mounted ConfigMap) is followed too.
func TestRotatedSharedMemoryPasswordReachesEveryConnector(t *testing.T) {
	ctx := context.Background()
	password, caVolume := volumetest.New(t), volumetest.New(t)
	firstCA := caPEM(t, "first CA")
	password.Write(map[string]string{"password": "first-password\n"})
	caVolume.Write(map[string]string{"ca.crt": firstCA})
	c := admin
	startOperator(t, operator.Options{
		SharedMemoryURL:          "rediss://redis.parley-system.svc:6379/0",
		SharedMemoryPasswordFile: password.Path("password"),
		SharedMemoryCAFile:       caVolume.Path("ca.crt"),
	})
	ns := envtestutil.Namespace(t, c, "rotate-")
	rules := &v1alpha1.ConversationRules{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "r"}}
	if err := yaml.UnmarshalStrict([]byte(`{operation: {port: 6379}, conversation: {rules: [{id: 1, mode: Sync, regex: PING, response: "+PONG\r\n"}]}}`), &rules.Spec); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, rules); err != nil {
		t.Fatal(err)
	}
	names := []string{"a", "b", "c"}
	create := func(name string) {
		t.Helper()
		ec := &v1alpha1.ExternalConnector{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1alpha1.ExternalConnectorSpec{Rules: "r"}}
		if err := c.Create(ctx, ec); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range names {
		create(name)
	}
	// secretsHold waits until the engine Secret of every named connector holds want.
	secretsHold := func(what string, want map[string]string) {
		t.Helper()
		envtestutil.Eventually(t, 60*time.Second, what, func() error {
			for _, name := range names {
				var s corev1.Secret
				if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: v1alpha1.EngineSecretName(name)}, &s); err != nil {
					return err
				}
				for k, v := range want {
					if !bytes.Equal(s.Data[k], []byte(v)) {
						return fmt.Errorf("Secret %s: %s is %q, want %q", s.Name, k, s.Data[k], v)
					}
				}
			}
			return nil
		})
	}
	secretsHold("the first password and CA in every engine Secret", map[string]string{
		v1alpha1.SharedMemoryPasswordKey: "first-password", v1alpha1.SharedMemoryCAKey: firstCA,
	})

	password.Write(map[string]string{"password": "second-password\n"})
	secretsHold("the rotated password in every engine Secret", map[string]string{
		v1alpha1.SharedMemoryPasswordKey: "second-password", v1alpha1.SharedMemoryCAKey: firstCA,
	})

	// An empty file is not a password: the operator says so and keeps handing out the last
	// valid one, to a connector made meanwhile too.
	password.Write(map[string]string{"password": "\n"})
	envtestutil.Eventually(t, 60*time.Second, "parley_operator_shared_memory_files_valid 0", func() error {
		if v := filesValid(t); v != 0 {
			return fmt.Errorf("%v", v)
		}
		return nil
	})
	names = append(names, "d")
	create("d")
	secretsHold("the last valid password kept", map[string]string{
		v1alpha1.SharedMemoryPasswordKey: "second-password", v1alpha1.SharedMemoryCAKey: firstCA,
	})

	// Valid again, and a new CA as well.
	secondCA := caPEM(t, "second CA")
	password.Write(map[string]string{"password": "third-password"})
	caVolume.Write(map[string]string{"ca.crt": secondCA})
	secretsHold("the third password and the second CA in every engine Secret", map[string]string{
		v1alpha1.SharedMemoryPasswordKey: "third-password", v1alpha1.SharedMemoryCAKey: secondCA,
	})
	if v := filesValid(t); v != 1 {
		t.Errorf("parley_operator_shared_memory_files_valid %v once the files are valid again, want 1", v)
	}
}
