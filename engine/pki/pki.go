// Package pki keeps the engine's certificate authority and serving certificate in one Secret
// that every operator replica shares, and serves the current certificate to the engine's
// TLS listener. Connectors trust the CA (their own Secrets carry a copy of ca.crt), so the
// serving certificate can be rotated freely while the CA stays put.
//
// Replicas coordinate only through the Secret's resourceVersion: whoever writes first wins,
// the others re-read and adopt what was written. There is no leader.
package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"maps"
	"math/big"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Keys of the engine Secret. tls.crt holds the serving certificate alone, not a chain:
// clients verify it against ca.crt, which they already have.
const (
	CACertKey = "ca.crt"
	CAKeyKey  = "ca.key"
	CertKey   = corev1.TLSCertKey
	KeyKey    = corev1.TLSPrivateKeyKey
)

const (
	DefaultCAValidity      = 10 * 365 * 24 * time.Hour
	DefaultServingValidity = 90 * 24 * time.Hour
	DefaultCheckInterval   = time.Minute

	// backdate tolerates clocks of clients that run behind the replica that issued a
	// certificate.
	backdate = 5 * time.Minute
	// maxAttempts bounds one check's read-modify-write loop; running out is not fatal, the
	// next check starts over.
	maxAttempts = 8
	// firstRetry is how soon a failed first check is retried: the engine cannot serve
	// before it has a certificate, so waiting a whole CheckInterval would be too long.
	firstRetry = time.Second
)

// Manager keeps the engine's CA and serving certificate in one Secret and serves the current
// certificate. Start it on every replica (it is a manager.Runnable that does not need leader
// election); handshakes served through ServerTLSConfig pick up a rotated certificate at once.
type Manager struct {
	// Client writes the Secret, and reads it unless APIReader is set.
	Client client.Client
	// APIReader, if set, reads the Secret. With a manager's cached Client, pass
	// mgr.GetAPIReader(): a cached read would start an informer on Secrets and return stale
	// versions, which only cost conflicts, but the informer costs memory and RBAC.
	APIReader client.Reader

	Namespace, SecretName string

	// DNSNames and IPAddresses are the serving certificate's SANs. A certificate that lacks
	// any of them is renewed; one with extra SANs is kept, so that replicas of an older
	// and a newer configuration during a rollout do not take turns renewing.
	DNSNames    []string
	IPAddresses []net.IP

	// CAValidity is how long a new CA is valid; DefaultCAValidity if zero.
	CAValidity time.Duration
	// ServingValidity is how long a new serving certificate is valid;
	// DefaultServingValidity if zero.
	ServingValidity time.Duration
	// RenewBefore renews the serving certificate once less than this is left of it (and
	// replaces the CA once less than this is left of the CA); ServingValidity/3 if zero.
	RenewBefore time.Duration
	// CheckInterval is how often the Secret is re-read, to renew or to adopt what another
	// replica wrote; DefaultCheckInterval if zero.
	CheckInterval time.Duration
	// CAChanged, if set, is called after a CA other than the one served before is loaded
	// (the first included), so that those who hand the CA to clients can follow a rotation:
	// the admission webhook's caBundle does. It runs on Start's goroutine and must not
	// block.
	CAChanged func()

	initOnce  sync.Once
	ready     chan struct{}
	readyOnce sync.Once
	started   atomic.Bool
	current   atomic.Pointer[bundle]
}

// bundle is one consistent set of CA and serving certificate, as loaded from or written to
// the Secret.
type bundle struct {
	data  map[string][]byte // the four keys, PEM
	ca    *x509.Certificate
	caKey crypto.Signer
	cert  *tls.Certificate // Leaf is set
}

type settings struct {
	caValidity, servingValidity, renewBefore, interval time.Duration
}

func (m *Manager) init() {
	m.initOnce.Do(func() { m.ready = make(chan struct{}) })
}

func (m *Manager) key() client.ObjectKey {
	return client.ObjectKey{Namespace: m.Namespace, Name: m.SecretName}
}

func (m *Manager) reader() client.Reader {
	if m.APIReader != nil {
		return m.APIReader
	}
	return m.Client
}

// settings applies the defaults and rejects combinations that would renew on every check or
// let a certificate lapse between two checks.
func (m *Manager) settings() (settings, error) {
	s := settings{m.CAValidity, m.ServingValidity, m.RenewBefore, m.CheckInterval}
	if s.caValidity == 0 {
		s.caValidity = DefaultCAValidity
	}
	if s.servingValidity == 0 {
		s.servingValidity = DefaultServingValidity
	}
	if s.renewBefore == 0 {
		s.renewBefore = s.servingValidity / 3
	}
	if s.interval == 0 {
		s.interval = DefaultCheckInterval
	}
	switch {
	case m.Client == nil:
		return s, errors.New("engine PKI: no Client")
	case m.Namespace == "" || m.SecretName == "":
		return s, errors.New("engine PKI: Namespace and SecretName are required")
	case s.caValidity < 0 || s.servingValidity < 0 || s.renewBefore < 0 || s.interval < 0:
		return s, errors.New("engine PKI: durations must not be negative")
	case s.servingValidity > s.caValidity:
		return s, fmt.Errorf("engine PKI: ServingValidity %v exceeds CAValidity %v", s.servingValidity, s.caValidity)
	case s.renewBefore >= s.servingValidity:
		return s, fmt.Errorf("engine PKI: RenewBefore %v must be less than ServingValidity %v", s.renewBefore, s.servingValidity)
	case s.interval >= s.renewBefore:
		return s, fmt.Errorf("engine PKI: CheckInterval %v must be less than RenewBefore %v, or a certificate could expire between two checks", s.interval, s.renewBefore)
	}
	return s, nil
}

// NeedLeaderElection is false: every replica runs an engine and needs the certificate.
func (m *Manager) NeedLeaderElection() bool { return false }

// Ready is closed once a certificate is loaded.
func (m *Manager) Ready() <-chan struct{} {
	m.init()
	return m.ready
}

// Start makes sure the Secret holds a valid CA and serving certificate (creating, repairing
// or renewing them), loads them, and checks again every CheckInterval until ctx is done.
// Failed checks are logged and retried, not returned: a transient API error must not stop
// the operator, and the certificate in hand stays valid for a while. Start returns an error
// only for an invalid configuration.
func (m *Manager) Start(ctx context.Context) error {
	m.init()
	cfg, err := m.settings()
	if err != nil {
		return err
	}
	if !m.started.CompareAndSwap(false, true) {
		return errors.New("engine PKI: Start called twice")
	}
	logger := log.FromContext(ctx).WithName("engine-pki").WithValues("secret", m.key().String())
	ctx = log.IntoContext(ctx, logger)
	retry := min(firstRetry, cfg.interval)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		if ctx.Err() != nil {
			return nil
		}
		next := cfg.interval
		if err := m.check(ctx, cfg); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if m.current.Load() == nil {
				next, retry = retry, min(2*retry, cfg.interval)
			}
			logger.Error(err, "engine PKI check failed", "retryIn", next)
		}
		timer.Reset(next)
	}
}

// check is one optimistic read-modify-write of the Secret: a lost race (AlreadyExists on
// create, Conflict on update) means another replica wrote first, so re-read and judge what
// it wrote rather than overwrite it.
func (m *Manager) check(ctx context.Context, cfg settings) error {
	logger := log.FromContext(ctx)
	key := m.key()
	for attempt := 1; ; attempt++ {
		last := attempt >= maxAttempts
		var s corev1.Secret
		err := m.reader().Get(ctx, key, &s)
		if apierrors.IsNotFound(err) {
			// Recreate from what this replica holds, if anything: a deleted Secret must
			// not cost the connectors their trust in the CA.
			var held map[string][]byte
			if b := m.current.Load(); b != nil {
				held = b.data
			}
			v, err := judge(held, m.DNSNames, m.IPAddresses, cfg, time.Now())
			if err != nil {
				return err
			}
			s = corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: m.Namespace,
					Name:      m.SecretName,
					Labels:    map[string]string{"app.kubernetes.io/name": "parley", "app.kubernetes.io/component": "engine"},
				},
				Type: corev1.SecretTypeTLS,
				// A copy: Create decodes the apiserver's answer into the object.
				Data: maps.Clone(v.b.data),
			}
			err = m.Client.Create(ctx, &s)
			if apierrors.IsAlreadyExists(err) && !last {
				continue
			}
			if err != nil {
				return fmt.Errorf("create engine Secret %s: %w", key, err)
			}
			if held != nil {
				logger.Info("engine Secret was missing: recreated it", "kept", v.kept())
			} else {
				logger.Info("created engine Secret with a new CA and serving certificate")
			}
			m.load(ctx, v.b)
			return nil
		}
		if err != nil {
			return fmt.Errorf("read engine Secret %s: %w", key, err)
		}
		v, err := judge(s.Data, m.DNSNames, m.IPAddresses, cfg, time.Now())
		if err != nil {
			return err
		}
		if !v.changed() {
			m.load(ctx, v.b)
			return nil
		}
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		maps.Copy(s.Data, v.b.data)
		// The Update carries the resourceVersion read above, so it fails with Conflict if
		// anyone wrote in between.
		err = m.Client.Update(ctx, &s)
		if (apierrors.IsConflict(err) || apierrors.IsNotFound(err)) && !last {
			continue
		}
		if err != nil {
			return fmt.Errorf("update engine Secret %s: %w", key, err)
		}
		v.log(ctx)
		m.load(ctx, v.b)
		return nil
	}
}

// load makes b the served bundle and closes Ready.
func (m *Manager) load(ctx context.Context, b *bundle) {
	prev := m.current.Load()
	if prev == nil || !sameData(prev.data, b.data) {
		m.current.Store(b)
		caChanged := prev != nil && !bytes.Equal(prev.data[CACertKey], b.data[CACertKey])
		log.FromContext(ctx).Info("serving engine certificate",
			"serial", b.cert.Leaf.SerialNumber.Text(16), "notAfter", b.cert.Leaf.NotAfter,
			"dnsNames", b.cert.Leaf.DNSNames, "caChanged", caChanged)
		if (prev == nil || caChanged) && m.CAChanged != nil {
			m.CAChanged()
		}
	}
	m.readyOnce.Do(func() { close(m.ready) })
}

func sameData(a, b map[string][]byte) bool {
	for _, k := range []string{CACertKey, CAKeyKey, CertKey, KeyKey} {
		if !bytes.Equal(a[k], b[k]) {
			return false
		}
	}
	return true
}

// GetCertificate returns the current serving certificate; use it as
// tls.Config.GetCertificate so every handshake gets the latest one.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	b := m.current.Load()
	if b == nil {
		return nil, errors.New("engine serving certificate not loaded yet")
	}
	return b.cert, nil
}

// CAPEM returns the current CA certificate as PEM, nil before Ready.
func (m *Manager) CAPEM() []byte {
	b := m.current.Load()
	if b == nil {
		return nil
	}
	return bytes.Clone(b.data[CACertKey])
}

// ServerTLSConfig is the engine listener's TLS configuration, with the channel's settings
// (enginev1.MinTLSVersion: TLS 1.3 only).
func (m *Manager) ServerTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     enginev1.MinTLSVersion,
		GetCertificate: m.GetCertificate,
		NextProtos:     enginev1.NextProtos(),
	}
}

// verdict is what judge decided about the Secret's contents.
type verdict struct {
	b *bundle
	// caWhy and servingWhy say why the CA or the serving certificate was replaced (nil:
	// kept). caBad and servingBad tell corrupt material from material that is merely
	// missing or due.
	caWhy, servingWhy   error
	caBad, servingBad   bool
	caFresh, servingNew bool
}

func (v verdict) changed() bool { return v.caFresh || v.servingNew }

func (v verdict) kept() string {
	switch {
	case v.caFresh:
		return "nothing"
	case v.servingNew:
		return "CA"
	}
	return "CA and serving certificate"
}

func (v verdict) log(ctx context.Context) {
	logger := log.FromContext(ctx)
	switch {
	case v.caFresh && v.caBad:
		// Connectors trust the old CA until their Secrets carry the new one.
		logger.Error(v.caWhy, "replaced the engine CA and serving certificate")
	case v.caFresh:
		logger.Info("issued a new engine CA and serving certificate", "reason", errString(v.caWhy))
	case v.servingBad:
		logger.Error(v.servingWhy, "replaced the engine serving certificate; kept the CA")
	default:
		logger.Info("renewed the engine serving certificate", "reason", errString(v.servingWhy))
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// judge checks data (the Secret's, or nil) and returns the bundle to serve, issuing a new
// CA and serving certificate where the ones in data are missing, corrupt or due. An error
// means new material could not be made, never that data was bad.
func judge(data map[string][]byte, dnsNames []string, ips []net.IP, cfg settings, now time.Time) (verdict, error) {
	var v verdict
	ca, caKey, missing, err := parseCA(data, now, cfg.renewBefore)
	if err != nil || missing {
		v.caFresh, v.caBad = true, !missing
		v.caWhy = err
		if missing {
			v.caWhy = errors.New("no CA in the Secret")
		}
		caPEM, keyPEM, err := newCA(cfg.caValidity, now)
		if err != nil {
			return v, err
		}
		data = map[string][]byte{CACertKey: caPEM, CAKeyKey: keyPEM}
		if ca, caKey, _, err = parseCA(data, now, cfg.renewBefore); err != nil {
			return v, fmt.Errorf("new engine CA: %w", err)
		}
	}
	var cert *tls.Certificate
	if !v.caFresh {
		cert, v.servingBad, v.servingWhy = checkServing(data, ca, dnsNames, ips, cfg.renewBefore, now)
	}
	out := map[string][]byte{CACertKey: data[CACertKey], CAKeyKey: data[CAKeyKey]}
	if cert != nil {
		out[CertKey], out[KeyKey] = data[CertKey], data[KeyKey]
	} else {
		v.servingNew = true
		certPEM, keyPEM, err := issueServing(ca, caKey, dnsNames, ips, cfg.servingValidity, now)
		if err != nil {
			return v, err
		}
		out[CertKey], out[KeyKey] = certPEM, keyPEM
		if cert, err = keyPair(certPEM, keyPEM); err != nil {
			return v, fmt.Errorf("new engine serving certificate: %w", err)
		}
	}
	v.b = &bundle{data: out, ca: ca, caKey: caKey, cert: cert}
	return v, nil
}

// parseCA returns the CA in data, missing if data has none at all, or why it cannot be used.
func parseCA(data map[string][]byte, now time.Time, renewBefore time.Duration) (ca *x509.Certificate, key crypto.Signer, missing bool, err error) {
	certPEM, keyPEM := data[CACertKey], data[CAKeyKey]
	if len(certPEM) == 0 && len(keyPEM) == 0 {
		return nil, nil, true, nil
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, false, fmt.Errorf("%s: no PEM certificate", CACertKey)
	}
	if ca, err = x509.ParseCertificate(block.Bytes); err != nil {
		return nil, nil, false, fmt.Errorf("%s: %w", CACertKey, err)
	}
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, false, fmt.Errorf("%s: not a CA certificate (IsCA %v, may sign certificates %v)", CACertKey, ca.IsCA, ca.KeyUsage&x509.KeyUsageCertSign != 0)
	}
	if key, err = parseKey(keyPEM); err != nil {
		return nil, nil, false, fmt.Errorf("%s: %w", CAKeyKey, err)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(ca.PublicKey) {
		return nil, nil, false, fmt.Errorf("%s does not match the key of %s", CAKeyKey, CACertKey)
	}
	if now.Add(renewBefore).After(ca.NotAfter) {
		return nil, nil, false, fmt.Errorf("%s expires at %s", CACertKey, ca.NotAfter.UTC().Format(time.RFC3339))
	}
	return ca, key, false, nil
}

// parseKey accepts the usual PEM encodings, so that an administrator may bring a CA of
// their own, not only one this package made.
func parseKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM private key")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%T cannot sign", key)
	}
	return signer, nil
}

// checkServing returns the serving certificate in data if it can stay; otherwise why not,
// and whether that is because it is corrupt rather than missing or due.
func checkServing(data map[string][]byte, ca *x509.Certificate, dnsNames []string, ips []net.IP, renewBefore time.Duration, now time.Time) (cert *tls.Certificate, corrupt bool, why error) {
	certPEM, keyPEM := data[CertKey], data[KeyKey]
	if len(certPEM) == 0 && len(keyPEM) == 0 {
		return nil, false, errors.New("no serving certificate in the Secret")
	}
	kp, err := keyPair(certPEM, keyPEM)
	if err != nil {
		return nil, true, fmt.Errorf("serving certificate: %w", err)
	}
	leaf := kp.Leaf
	if !bytes.Equal(leaf.RawIssuer, ca.RawSubject) {
		return nil, true, fmt.Errorf("serving certificate was issued by %q, not by the CA %q", leaf.Issuer, ca.Subject)
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		return nil, true, fmt.Errorf("serving certificate is not signed by the CA: %w", err)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		return nil, true, errors.New("serving certificate is not for server authentication")
	}
	if left := leaf.NotAfter.Sub(now); left < renewBefore {
		return nil, false, fmt.Errorf("serving certificate expires at %s, in %v", leaf.NotAfter.UTC().Format(time.RFC3339), left.Round(time.Second))
	}
	if leaf.NotBefore.After(now) {
		return nil, false, fmt.Errorf("serving certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	var lacking []string
	for _, name := range dnsNames {
		if !slices.Contains(leaf.DNSNames, name) {
			lacking = append(lacking, name)
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			lacking = append(lacking, ip.String())
		}
	}
	if len(lacking) > 0 {
		return nil, false, fmt.Errorf("serving certificate lacks SANs %v", lacking)
	}
	return kp, false, nil
}

// keyPair is tls.X509KeyPair with Leaf set whatever GODEBUG says.
func keyPair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	kp, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if kp.Leaf == nil {
		if kp.Leaf, err = x509.ParseCertificate(kp.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &kp, nil
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

// newCA makes a self-signed CA that may sign only leaf certificates.
func newCA(validity time.Duration, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, fmt.Errorf("generate engine CA key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, fmt.Errorf("generate engine CA serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		// The serial in the name tells CAs apart when one replaces another; the
		// subject is what clients match a certificate's issuer against.
		Subject:               pkix.Name{Organization: []string{"Parley"}, CommonName: "parley engine CA " + fmt.Sprintf("%032x", sn)[:8]},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("create engine CA certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// issueServing signs a serving certificate with the CA. It never outlives the CA, which
// would make it fail verification before it is due for renewal.
func issueServing(ca *x509.Certificate, caKey crypto.Signer, dnsNames []string, ips []net.IP, validity time.Duration, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, fmt.Errorf("generate engine serving key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, fmt.Errorf("generate engine serving serial: %w", err)
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{Organization: []string{"Parley"}, CommonName: "parley-engine"},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("issue engine serving certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}
