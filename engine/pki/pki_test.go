package pki

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestCreatesFromNothing(t *testing.T) {
	ns := namespace(t)
	m := newManager(ns)
	if _, err := m.GetCertificate(nil); err == nil {
		t.Error("GetCertificate before Start returned no error")
	}
	if m.CAPEM() != nil {
		t.Error("CAPEM before Start is not nil")
	}
	startReady(t, m)
	before := time.Now()

	s := getSecret(t, ns)
	if s.Type != corev1.SecretTypeTLS {
		t.Errorf("Secret type %q; want %q", s.Type, corev1.SecretTypeTLS)
	}
	ca := parseCert(t, s.Data[CACertKey])
	leaf := parseCert(t, s.Data[CertKey])
	if _, err := parseKey(s.Data[CAKeyKey]); err != nil {
		t.Errorf("ca.key: %v", err)
	}

	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 || !ca.MaxPathLenZero {
		t.Errorf("CA: IsCA %v, KeyUsage %b, MaxPathLenZero %v; want a CA that signs only leaves", ca.IsCA, ca.KeyUsage, ca.MaxPathLenZero)
	}
	for name, c := range map[string]*x509.Certificate{"CA": ca, "leaf": leaf} {
		if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
			t.Errorf("%s key is %T; want ECDSA P-256", name, c.PublicKey)
		}
		if c.SerialNumber.BitLen() < 64 || c.SerialNumber.BitLen() > 128 {
			t.Errorf("%s serial has %d bits; want a random 128-bit one", name, c.SerialNumber.BitLen())
		}
		if skew := before.Sub(c.NotBefore); skew < time.Minute {
			t.Errorf("%s NotBefore is only %v before now; want room for clock skew", name, skew)
		}
	}
	if d := ca.NotAfter.Sub(before) - DefaultCAValidity; d < -time.Hour || d > time.Hour {
		t.Errorf("CA NotAfter %v; want about %v from now", ca.NotAfter, DefaultCAValidity)
	}
	if d := leaf.NotAfter.Sub(before) - DefaultServingValidity; d < -time.Hour || d > time.Hour {
		t.Errorf("leaf NotAfter %v; want about %v from now", leaf.NotAfter, DefaultServingValidity)
	}
	if leaf.IsCA || !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("leaf: IsCA %v, ExtKeyUsage %v; want a server certificate", leaf.IsCA, leaf.ExtKeyUsage)
	}
	if !slices.Equal(leaf.DNSNames, []string{engineName}) || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("leaf SANs %v %v; want %s and 127.0.0.1", leaf.DNSNames, leaf.IPAddresses, engineName)
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		t.Errorf("leaf not signed by the CA: %v", err)
	}

	if !bytes.Equal(m.CAPEM(), s.Data[CACertKey]) {
		t.Error("CAPEM differs from the Secret's ca.crt")
	}
	if !served(t, m).Equal(leaf) {
		t.Error("GetCertificate serves another certificate than the Secret's tls.crt")
	}
	addr := serve(t, m)
	for _, name := range []string{engineName, "127.0.0.1"} {
		if got := mustHandshake(t, addr, m.CAPEM(), name); !got.Equal(leaf) {
			t.Errorf("handshake as %q got serial %x; want %x", name, got.SerialNumber, leaf.SerialNumber)
		}
	}
}

func TestSecondManagerLoadsSameSecret(t *testing.T) {
	ns := namespace(t)
	m1 := newManager(ns)
	m1.CheckInterval = 100 * time.Millisecond
	startReady(t, m1)
	rv := getSecret(t, ns).ResourceVersion

	m2 := newManager(ns)
	m2.CheckInterval = 100 * time.Millisecond
	startReady(t, m2)
	if !bytes.Equal(m1.CAPEM(), m2.CAPEM()) {
		t.Error("the second manager loaded another CA")
	}
	if !served(t, m1).Equal(served(t, m2)) {
		t.Error("the second manager serves another certificate")
	}
	// Several checks of both: a valid Secret is never rewritten.
	time.Sleep(time.Second)
	if got := getSecret(t, ns).ResourceVersion; got != rv {
		t.Errorf("Secret rewritten: resourceVersion %s, was %s", got, rv)
	}
}

func TestConcurrentStartsAgree(t *testing.T) {
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			ns := namespace(t)
			ms := make([]*Manager, 4)
			ls := make([]*logs, len(ms))
			// The gate releases all Starts at once, so that their first reads all find
			// no Secret and their creates collide.
			var wg sync.WaitGroup
			gate := make(chan struct{})
			for i := range ms {
				ms[i] = newManager(ns)
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-gate
					ls[i], _ = start(t, ms[i])
				}()
			}
			close(gate)
			wg.Wait()
			for i, m := range ms {
				select {
				case <-m.Ready():
				case <-time.After(wait):
					t.Fatalf("manager %d not ready; its log:\n%s", i, ls[i])
				}
			}
			s := getSecret(t, ns)
			leaf := parseCert(t, s.Data[CertKey])
			for i, m := range ms {
				if !bytes.Equal(m.CAPEM(), s.Data[CACertKey]) {
					t.Errorf("manager %d holds another CA than the Secret", i)
				}
				if !served(t, m).Equal(leaf) {
					t.Errorf("manager %d serves another certificate than the Secret", i)
				}
				// A lost race is an expected outcome, not a failure to report.
				if errs := ls[i].errors(); len(errs) > 0 {
					t.Errorf("manager %d logged errors:\n%s", i, strings.Join(errs, "\n"))
				}
			}
		})
	}
}

func TestRenewsBeforeExpiry(t *testing.T) {
	ns := namespace(t)
	// Two replicas renewing the same short-lived certificate: whichever renews first, the
	// other must adopt its certificate rather than write its own.
	ms := []*Manager{newManager(ns), newManager(ns)}
	addrs := make([]string, len(ms))
	for i, m := range ms {
		m.ServingValidity = 3 * time.Second
		m.CheckInterval = 200 * time.Millisecond
		startReady(t, m)
		addrs[i] = serve(t, m)
	}
	caPEM := ms[0].CAPEM()
	first := mustHandshake(t, addrs[0], caPEM, engineName)
	if !first.Equal(served(t, ms[0])) {
		t.Fatal("the handshake got another certificate than GetCertificate returns")
	}
	if left := time.Until(first.NotAfter); left > 3*time.Second {
		t.Fatalf("leaf valid for another %v; want at most ServingValidity 3s", left)
	}

	for i, addr := range addrs {
		eventually(t, 15*time.Second, fmt.Sprintf("replica %d serves a renewed certificate", i), func() error {
			got := mustHandshake(t, addr, caPEM, engineName)
			if got.Equal(first) {
				return errSame
			}
			if !got.NotAfter.After(first.NotAfter) {
				return fmt.Errorf("renewed certificate expires at %v, not after %v", got.NotAfter, first.NotAfter)
			}
			return nil
		})
	}
	for i, m := range ms {
		if !bytes.Equal(m.CAPEM(), caPEM) {
			t.Errorf("replica %d changed the CA on renewal", i)
		}
	}
	// Renewals keep coming every couple of seconds; at some instant both replicas must
	// serve exactly what the Secret holds.
	eventually(t, 15*time.Second, "both replicas serve the Secret's certificate", func() error {
		leaf := parseCert(t, getSecret(t, ns).Data[CertKey])
		for i, m := range ms {
			if !served(t, m).Equal(leaf) {
				return fmt.Errorf("replica %d serves serial %x, the Secret holds %x", i, served(t, m).SerialNumber, leaf.SerialNumber)
			}
		}
		return nil
	})
}

func TestAdoptsCertificateWrittenByAnotherReplica(t *testing.T) {
	ns := namespace(t)
	m := newManager(ns)
	m.CheckInterval = 200 * time.Millisecond
	startReady(t, m)
	addr := serve(t, m)
	old := mustHandshake(t, addr, m.CAPEM(), engineName)

	// Write what another replica would after renewing: a new leaf from the same CA.
	s := getSecret(t, ns)
	ca := parseCert(t, s.Data[CACertKey])
	caKey, err := parseKey(s.Data[CAKeyKey])
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := issueServing(ca, caKey, m.DNSNames, m.IPAddresses, DefaultServingValidity, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s.Data[CertKey], s.Data[KeyKey] = certPEM, keyPEM
	if err := k8s.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	theirs := parseCert(t, certPEM)
	eventually(t, 10*time.Second, "the manager serves the other replica's certificate", func() error {
		got := mustHandshake(t, addr, m.CAPEM(), engineName)
		if got.Equal(old) {
			return errSame
		}
		if !got.Equal(theirs) {
			return fmt.Errorf("serves serial %x; want %x", got.SerialNumber, theirs.SerialNumber)
		}
		return nil
	})
	if got := getSecret(t, ns).Data[CertKey]; !bytes.Equal(got, certPEM) {
		t.Error("the manager overwrote the other replica's valid certificate")
	}
}

// material is a valid Secret content for the test SANs.
func material(t *testing.T) map[string][]byte {
	t.Helper()
	cfg, err := newManager("x").settings()
	if err != nil {
		t.Fatal(err)
	}
	v, err := judge(nil, []string{engineName}, []net.IP{net.ParseIP("127.0.0.1")}, cfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return v.b.data
}

func TestCorruptSecretIsReplaced(t *testing.T) {
	otherKey := func(t *testing.T) []byte {
		_, keyPEM, err := newKey()
		if err != nil {
			t.Fatal(err)
		}
		return keyPEM
	}
	cases := []struct {
		name    string
		corrupt func(t *testing.T, data map[string][]byte)
		keepCA  bool
		why     string // in the error logged
	}{
		{"serving certificate unparseable", func(t *testing.T, d map[string][]byte) { d[CertKey] = []byte("garbage") }, true, "serving certificate"},
		{"serving key mismatch", func(t *testing.T, d map[string][]byte) { d[KeyKey] = otherKey(t) }, true, "private key does not match"},
		{"serving certificate from another CA", func(t *testing.T, d map[string][]byte) {
			other := material(t)
			d[CertKey], d[KeyKey] = other[CertKey], other[KeyKey]
		}, true, "not by the CA"},
		{"CA unparseable", func(t *testing.T, d map[string][]byte) { d[CACertKey] = []byte("garbage") }, false, "no PEM certificate"},
		{"CA key mismatch", func(t *testing.T, d map[string][]byte) { d[CAKeyKey] = otherKey(t) }, false, "does not match"},
		{"CA expired", func(t *testing.T, d map[string][]byte) {
			caPEM, keyPEM, err := newCA(time.Hour, time.Now().Add(-2*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			d[CACertKey], d[CAKeyKey] = caPEM, keyPEM
		}, false, "expires at"},
		{"CA is a leaf", func(t *testing.T, d map[string][]byte) {
			d[CACertKey], d[CAKeyKey] = d[CertKey], d[KeyKey]
		}, false, "not a CA"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := namespace(t)
			data := material(t)
			good := bytes.Clone(data[CACertKey])
			tc.corrupt(t, data)
			data["unrelated"] = []byte("kept")
			s := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: secretName},
				Type:       corev1.SecretTypeOpaque,
				Data:       data,
			}
			if err := k8s.Create(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			m := newManager(ns)
			l, _ := startReady(t, m)

			s = getSecret(t, ns)
			if s.Type != corev1.SecretTypeOpaque || string(s.Data["unrelated"]) != "kept" {
				t.Errorf("Secret type %q, unrelated key %q; want both kept", s.Type, s.Data["unrelated"])
			}
			cfg, _ := m.settings()
			if v, err := judge(s.Data, m.DNSNames, m.IPAddresses, cfg, time.Now()); err != nil || v.changed() {
				t.Errorf("the Secret is still not valid: CA %v, serving %v", v.caWhy, v.servingWhy)
			}
			if kept := bytes.Equal(s.Data[CACertKey], good); kept != tc.keepCA {
				t.Errorf("CA kept: %v; want %v", kept, tc.keepCA)
			}
			if !bytes.Equal(m.CAPEM(), s.Data[CACertKey]) || !served(t, m).Equal(parseCert(t, s.Data[CertKey])) {
				t.Error("the manager serves something else than the repaired Secret")
			}
			mustHandshake(t, serve(t, m), s.Data[CACertKey], engineName)
			if errs := l.errors(); len(errs) != 1 || !strings.Contains(errs[0], tc.why) {
				t.Errorf("want one error logged saying %q; got:\n%s", tc.why, strings.Join(errs, "\n"))
			}
		})
	}
}

func TestSANChangeRenews(t *testing.T) {
	ns := namespace(t)
	m1 := newManager(ns)
	_, stop := startReady(t, m1)
	stop()
	before := getSecret(t, ns)
	old := parseCert(t, before.Data[CertKey])

	const extra = "parley-engine.other.svc"
	m2 := newManager(ns)
	m2.DNSNames = append(m2.DNSNames, extra)
	m2.IPAddresses = append(m2.IPAddresses, net.ParseIP("::1"))
	startReady(t, m2)
	leaf := served(t, m2)
	if leaf.Equal(old) {
		t.Fatal("not renewed although the configured SANs are not all in the certificate")
	}
	if !slices.Contains(leaf.DNSNames, extra) || !slices.ContainsFunc(leaf.IPAddresses, net.ParseIP("::1").Equal) {
		t.Errorf("renewed certificate has SANs %v %v; want %s and ::1 among them", leaf.DNSNames, leaf.IPAddresses, extra)
	}
	if !bytes.Equal(m2.CAPEM(), before.Data[CACertKey]) {
		t.Error("a SAN change replaced the CA")
	}
	if !leaf.Equal(parseCert(t, getSecret(t, ns).Data[CertKey])) {
		t.Error("the renewed certificate is not in the Secret")
	}
	mustHandshake(t, serve(t, m2), m2.CAPEM(), extra)

	// A replica that wants a subset of the SANs (an older configuration during a
	// rollout) keeps the certificate rather than taking turns renewing.
	rv := getSecret(t, ns).ResourceVersion
	m3 := newManager(ns)
	startReady(t, m3)
	if !served(t, m3).Equal(leaf) {
		t.Error("a replica configured with fewer SANs renewed the certificate")
	}
	if got := getSecret(t, ns).ResourceVersion; got != rv {
		t.Errorf("Secret rewritten: resourceVersion %s, was %s", got, rv)
	}
}

func TestClientTrustingAnotherCAFails(t *testing.T) {
	ns := namespace(t)
	m := newManager(ns)
	startReady(t, m)
	addr := serve(t, m)
	mustHandshake(t, addr, m.CAPEM(), engineName)

	otherCA, _, err := newCA(time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = handshake(addr, otherCA, engineName)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("handshake trusting another CA: %v; want an unknown authority error", err)
	}
	_, err = handshake(addr, m.CAPEM(), "someone-else.example")
	var host x509.HostnameError
	if !errors.As(err, &host) {
		t.Errorf("handshake expecting another name: %v; want a hostname error", err)
	}
}

func TestDeletedSecretIsRecreatedWithTheSameCA(t *testing.T) {
	ns := namespace(t)
	m := newManager(ns)
	m.CheckInterval = 200 * time.Millisecond
	startReady(t, m)
	s := getSecret(t, ns)
	if err := k8s.Delete(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the Secret is back", func() error {
		var again corev1.Secret
		err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: secretName}, &again)
		if err != nil {
			return err
		}
		if again.UID == s.UID {
			return errSame
		}
		if !bytes.Equal(again.Data[CACertKey], s.Data[CACertKey]) {
			t.Fatal("recreated with another CA: connectors would stop trusting the engine")
		}
		return nil
	})
}

func TestInvalidSettings(t *testing.T) {
	for name, change := range map[string]func(*Manager){
		"no client":                            func(m *Manager) { m.Client = nil },
		"no name":                              func(m *Manager) { m.SecretName = "" },
		"renew before longer than validity":    func(m *Manager) { m.ServingValidity, m.RenewBefore = time.Hour, time.Hour },
		"check slower than the renewal window": func(m *Manager) { m.RenewBefore, m.CheckInterval = time.Minute, time.Minute },
		"serving outlives the CA":              func(m *Manager) { m.CAValidity = time.Hour },
		"negative":                             func(m *Manager) { m.CheckInterval = -time.Second },
	} {
		t.Run(name, func(t *testing.T) {
			m := newManager("default")
			change(m)
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := m.Start(ctx); err == nil {
				t.Error("Start accepted the settings")
			}
		})
	}
	if err := newManager("default").Start(canceled()); err != nil {
		t.Errorf("defaults rejected: %v", err)
	}
}

func TestClientTLSConfigNeedsACertificate(t *testing.T) {
	if _, err := enginev1.ClientTLSConfig([]byte("not PEM"), engineName); err == nil {
		t.Error("ClientTLSConfig accepted PEM without a certificate")
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// racingClient runs interlope once, just before the first Create or Update it is asked to
// make: another replica writing between this one's read and its write.
type racingClient struct {
	client.Client
	once      sync.Once
	interlope func() error
	err       error
}

func (c *racingClient) race() {
	c.once.Do(func() { c.err = c.interlope() })
}

func (c *racingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	c.race()
	return c.Client.Create(ctx, obj, opts...)
}

func (c *racingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	c.race()
	return c.Client.Update(ctx, obj, opts...)
}

func TestLostRaceAdoptsTheWinner(t *testing.T) {
	for _, existing := range []bool{false, true} {
		name := "create"
		if existing {
			name = "update"
		}
		t.Run(name, func(t *testing.T) {
			ns := namespace(t)
			if existing {
				// A Secret this replica wants to renew: its certificate lacks a SAN.
				data := material(t)
				stale := newManager(ns)
				stale.DNSNames = []string{"old.example"}
				cfg, _ := stale.settings()
				v, err := judge(map[string][]byte{CACertKey: data[CACertKey], CAKeyKey: data[CAKeyKey]}, stale.DNSNames, nil, cfg, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: secretName}, Type: corev1.SecretTypeTLS, Data: v.b.data}
				if err := k8s.Create(context.Background(), s); err != nil {
					t.Fatal(err)
				}
			}
			winner := material(t)
			rc := &racingClient{Client: k8s, interlope: func() error {
				s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: secretName}, Type: corev1.SecretTypeTLS}
				if !existing {
					s.Data = winner
					return k8s.Create(context.Background(), s)
				}
				if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(s), s); err != nil {
					return err
				}
				s.Data = winner
				return k8s.Update(context.Background(), s)
			}}
			m := newManager(ns)
			m.Client, m.APIReader = rc, k8s
			l, _ := startReady(t, m)
			if rc.err != nil {
				t.Fatalf("the other replica's write: %v", rc.err)
			}
			if !bytes.Equal(getSecret(t, ns).Data[CertKey], winner[CertKey]) {
				t.Error("the other replica's certificate was overwritten")
			}
			if !bytes.Equal(m.CAPEM(), winner[CACertKey]) || !served(t, m).Equal(parseCert(t, winner[CertKey])) {
				t.Error("the manager does not serve the other replica's certificate")
			}
			if errs := l.errors(); len(errs) > 0 {
				t.Errorf("a lost race logged errors:\n%s", strings.Join(errs, "\n"))
			}
		})
	}
}

func TestRefusesTLS12(t *testing.T) {
	m := newManager(namespace(t))
	startReady(t, m)
	cfg, err := enginev1.ClientTLSConfig(m.CAPEM(), engineName)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	d := tls.Dialer{Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if conn, err := d.DialContext(ctx, "tcp", serve(t, m)); err == nil {
		_ = conn.Close()
		t.Error("a TLS 1.2 client completed a handshake")
	}
}

// TestCAChangedFollowsTheCA: the hook fires on the first load and when the CA is replaced,
// never for a renewed serving certificate, which clients need not hear about.
func TestCAChangedFollowsTheCA(t *testing.T) {
	ns := namespace(t)
	var mu sync.Mutex
	var seen [][]byte
	m := newManager(ns)
	m.CheckInterval = 200 * time.Millisecond
	m.CAChanged = func() {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, m.CAPEM())
	}
	calls := func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
	startReady(t, m)
	first := m.CAPEM()
	if got := calls(); len(got) != 1 || !bytes.Equal(got[0], first) {
		t.Fatalf("after the first load: %d calls; want 1 with the CA loaded", len(got))
	}

	// A new leaf of the same CA, as another replica's renewal writes it.
	s := getSecret(t, ns)
	ca := parseCert(t, s.Data[CACertKey])
	caKey, err := parseKey(s.Data[CAKeyKey])
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := issueServing(ca, caKey, m.DNSNames, m.IPAddresses, DefaultServingValidity, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	s.Data[CertKey], s.Data[KeyKey] = certPEM, keyPEM
	if err := k8s.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	renewed := parseCert(t, certPEM)
	eventually(t, 10*time.Second, "the renewed certificate is served", func() error {
		if !served(t, m).Equal(renewed) {
			return errSame
		}
		return nil
	})
	if got := calls(); len(got) != 1 {
		t.Fatalf("a renewed serving certificate called CAChanged: %d calls; want still 1", len(got))
	}

	// A broken CA: the manager replaces it, and says so.
	s = getSecret(t, ns)
	s.Data[CACertKey] = []byte("garbage")
	if err := k8s.Update(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "CAChanged called with the new CA", func() error {
		got := calls()
		if len(got) != 2 {
			return fmt.Errorf("%d calls", len(got))
		}
		if bytes.Equal(got[1], first) || !bytes.Equal(got[1], getSecret(t, ns).Data[CACertKey]) {
			return errors.New("the second call did not see the Secret's new CA")
		}
		return nil
	})
}
