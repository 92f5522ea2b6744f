package sink_test

import (
	"context"
	"crypto/tls"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/sink"
)

// Kafka over TLS with SASL, every mechanism, all built from the Secrets an ActivitySink
// names (the CA bundle, username and password): kfake (no Kafka broker can run here, see
// TestKafkaReadBackByKcat) serves TLS with a certificate for siem.test and checks the
// credentials. kcat cannot check this: librdkafka needs the SaslHandshake request, which
// kfake does not offer, so the acknowledged produce is the proof; TestKafkaTLSReadBackByKcat
// reads a TLS topic back. A wrong password delivers nothing and fails the attempt.
func TestKafkaSASLFromSecrets(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "activities"),
				kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}}),
				kfake.EnableSASL(), kfake.Superuser(mech, "parley", "s3cret"))
			if err != nil {
				t.Fatal(err)
			}
			defer cluster.Close()
			spec := &v1alpha1.ActivitySinkSpec{Kafka: &v1alpha1.KafkaSink{Brokers: cluster.ListenAddrs(), Topic: "activities",
				TLS:  &v1alpha1.SinkTLS{CASecretRef: &v1alpha1.SecretKeyRef{Name: "kafka-ca"}, ServerName: "siem.test"},
				SASL: &v1alpha1.KafkaSASL{Mechanism: mech, SecretRef: v1alpha1.SecretKeyRef{Name: "kafka-user"}}}}
			secrets := func(password string) sink.SecretValue {
				return sink.SecretsIn(map[string]map[string][]byte{
					"kafka-ca":   {sink.KeyCA: caPEM},
					"kafka-user": {sink.KeyUsername: []byte("parley"), sink.KeyPassword: []byte(password)},
				})
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			dest, err := sink.NewDestination(spec, secrets("s3cret"))
			if err != nil {
				t.Fatal(err)
			}
			s := start(t, dest, sink.Options{MaxBatch: 10})
			s.Offer(items("redis-0a1b2c3d", 25)...)
			if err := s.Drain(ctx, 25); err != nil {
				t.Fatal(err)
			}
			if st := s.Stats(); st.Delivered != 25 || st.Dropped != 0 || st.Failed != 0 {
				t.Fatalf("stats %+v", st)
			}

			// kfake hangs up on a wrong password and franz-go dials again until the attempt's
			// context ends (the sink's Close, or here a short deadline).
			wrong, err := sink.NewDestination(spec, secrets("guess"))
			if err != nil {
				t.Fatal(err)
			}
			short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
			defer cancelShort()
			err = wrong.Deliver(short, items("redis-0a1b2c3d", 1))
			wrong.Close()
			if err == nil {
				t.Error("a wrong password delivered")
			}
		})
	}
}

// Kafka over TLS verified against the CA bundle of a Secret, read back by kcat over SSL.
func TestKafkaTLSReadBackByKcat(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed (Debian package kcat; CI installs it)")
	}
	certFile, keyFile, _ := selfSigned(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(certFile)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "activities"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	spec := &v1alpha1.ActivitySinkSpec{Kafka: &v1alpha1.KafkaSink{Brokers: cluster.ListenAddrs(), Topic: "activities",
		TLS: &v1alpha1.SinkTLS{CASecretRef: &v1alpha1.SecretKeyRef{Name: "kafka-ca"}, ServerName: "siem.test"}}}
	dest, err := sink.NewDestination(spec, sink.SecretsIn(map[string]map[string][]byte{"kafka-ca": {sink.KeyCA: caPEM}}))
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, dest, sink.Options{MaxBatch: 10})
	s.Offer(items("redis-0a1b2c3d", 25)...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Drain(ctx, 25); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, kcat, "-C", "-b", strings.Join(cluster.ListenAddrs(), ","), "-t", "activities",
		"-X", "security.protocol=SSL", "-X", "ssl.ca.location="+certFile, "-X", "ssl.endpoint.identification.algorithm=none",
		"-o", "beginning", "-e", "-q", "-f", "%h\n").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat: %v: %s", err, out)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 25 || lines[24] != "key=redis-0a1b2c3d-000025" {
		t.Errorf("kcat read %d records:\n%s", len(lines), out)
	}
}

// TLSConfig builds what a SinkTLS says from its Secret: the CA bundle as the only roots,
// the server name, insecureSkipVerify; a Secret without a PEM certificate, or missing, is
// an error naming it.
func TestTLSConfigFromSecret(t *testing.T) {
	certFile, _, pool := selfSigned(t, t.TempDir())
	caPEM, _ := os.ReadFile(certFile)
	secrets := sink.SecretsIn(map[string]map[string][]byte{"ca": {"bundle.pem": caPEM}, "junk": {sink.KeyCA: []byte("not PEM")}})
	if c, err := sink.TLSConfig(nil, secrets); c != nil || err != nil {
		t.Errorf("nil: %v %v", c, err)
	}
	c, err := sink.TLSConfig(&v1alpha1.SinkTLS{CASecretRef: &v1alpha1.SecretKeyRef{Name: "ca", Key: "bundle.pem"}, ServerName: "siem.test"}, secrets)
	if err != nil || !c.RootCAs.Equal(pool) || c.ServerName != "siem.test" || c.InsecureSkipVerify || c.MinVersion != tls.VersionTLS12 {
		t.Errorf("config %+v, %v", c, err)
	}
	if c, err := sink.TLSConfig(&v1alpha1.SinkTLS{InsecureSkipVerify: true}, secrets); err != nil || c.RootCAs != nil || !c.InsecureSkipVerify {
		t.Errorf("insecure: %+v, %v", c, err)
	}
	for ref, want := range map[string]string{"junk": `no PEM certificate`, "missing": `no Secret "missing"`} {
		if _, err := sink.TLSConfig(&v1alpha1.SinkTLS{CASecretRef: &v1alpha1.SecretKeyRef{Name: ref}}, secrets); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", ref, err, want)
		}
	}
	if _, err := sink.TLSConfig(&v1alpha1.SinkTLS{CASecretRef: &v1alpha1.SecretKeyRef{Name: "ca"}}, secrets); err == nil || !strings.Contains(err.Error(), `no key "ca.crt"`) {
		t.Errorf("default key: %v", err)
	}
}
