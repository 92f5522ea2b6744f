package sharedmemory_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/parley-dev/parley/connector/sharedmemory"
	"github.com/parley-dev/parley/connector/sharedmemory/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stores runs the same suite against the in-process store and a real redis-server.
func stores(t *testing.T, suite func(t *testing.T, s sharedmemory.Store)) {
	t.Run("memory", func(t *testing.T) { suite(t, sharedmemory.NewMemory()) })
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Options{})
		s, err := sharedmemory.NewRedis(context.Background(), srv.URL(), sharedmemory.RedisOptions{Namespace: "ns1"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		suite(t, s)
	})
}

func incr(t *testing.T, s sharedmemory.Store, space, name string) error {
	t.Helper()
	return s.Update(context.Background(), space, []string{name}, func(tx sharedmemory.Txn) error {
		v, err := tx.Get(name)
		if err != nil {
			return err
		}
		n := 0
		if v.Set {
			if n, err = strconv.Atoi(v.Text); err != nil {
				return err
			}
		}
		tx.Set(name, strconv.Itoa(n+1))
		return nil
	})
}

func view(t *testing.T, s sharedmemory.Store, space string, names ...string) []sharedmemory.Value {
	t.Helper()
	v, err := s.View(context.Background(), space, names)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestStoreReadsWritesAndKeepsSpacesApart(t *testing.T) {
	stores(t, func(t *testing.T, s sharedmemory.Store) {
		if v := view(t, s, "a", "x"); v[0].Set {
			t.Fatalf("empty store holds %+v", v[0])
		}
		if err := s.Update(context.Background(), "a", nil, func(tx sharedmemory.Txn) error {
			v, err := tx.Get("x") // not named ahead: read within the step all the same
			if err != nil || v.Set {
				t.Errorf("get: %+v %v", v, err)
			}
			tx.Set("x", "hello")
			if v, _ := tx.Get("x"); v.Text != "hello" {
				t.Errorf("a step reads its own write: %+v", v)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if v := view(t, s, "a", "x"); v[0] != (sharedmemory.Value{Text: "hello", Set: true}) {
			t.Fatalf("after write: %+v", v)
		}
		if v := view(t, s, "b", "x"); v[0].Set {
			t.Fatalf("space b sees space a: %+v", v)
		}
	})
}

func TestStoreStepThatFailsWritesNothing(t *testing.T) {
	stores(t, func(t *testing.T, s sharedmemory.Store) {
		boom := errors.New("boom")
		err := s.Update(context.Background(), "a", []string{"x"}, func(tx sharedmemory.Txn) error {
			tx.Set("x", "1")
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("err %v", err)
		}
		if v := view(t, s, "a", "x"); v[0].Set {
			t.Fatalf("failed step wrote %+v", v)
		}
		// The connection it used is clean: the next step commits.
		if err := incr(t, s, "a", "x"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestStoreInitKeepsOrOverwrites(t *testing.T) {
	stores(t, func(t *testing.T, s sharedmemory.Store) {
		ctx := context.Background()
		if err := s.Init(ctx, "a", []sharedmemory.Entry{{Name: "x", Text: "1"}}, false); err != nil {
			t.Fatal(err)
		}
		if err := s.Init(ctx, "a", []sharedmemory.Entry{{Name: "x", Text: "2"}, {Name: "y", Text: "3"}}, false); err != nil {
			t.Fatal(err)
		}
		if v := view(t, s, "a", "x", "y"); v[0].Text != "1" || v[1].Text != "3" {
			t.Fatalf("KeepExisting: %+v", v)
		}
		if err := s.Init(ctx, "a", []sharedmemory.Entry{{Name: "x", Text: "2"}}, true); err != nil {
			t.Fatal(err)
		}
		if v := view(t, s, "a", "x"); v[0].Text != "2" {
			t.Fatalf("Overwrite: %+v", v)
		}
	})
}

func TestStoreConcurrentStepsLoseNoUpdate(t *testing.T) {
	stores(t, func(t *testing.T, s sharedmemory.Store) {
		const workers, each = 4, 250
		var wg sync.WaitGroup
		errs := make(chan error, workers*each)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					if err := incr(t, s, "a", "n"); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if v := view(t, s, "a", "n"); v[0].Text != strconv.Itoa(workers*each) {
			t.Fatalf("counter %+v, want %d", v[0], workers*each)
		}
	})
}

func TestStoreNotifiesWritesOfItsSpace(t *testing.T) {
	stores(t, func(t *testing.T, s sharedmemory.Store) {
		sub := s.Subscribe("a")
		defer sub.Close()
		other := s.Subscribe("b")
		defer other.Close()
		// A Redis subscription is live once the server confirms it; keep writing until the
		// first notification arrives (a write that lands before is simply not announced).
		deadline := time.After(10 * time.Second)
		for got := false; !got; {
			if err := incr(t, s, "a", "n"); err != nil {
				t.Fatal(err)
			}
			select {
			case <-sub.C():
				got = true
			case <-time.After(20 * time.Millisecond):
			case <-deadline:
				t.Fatal("no notification of a write")
			}
		}
		select {
		case <-other.C():
			t.Fatal("space b notified of a write to space a")
		default:
		}
		if err := s.Init(context.Background(), "a", []sharedmemory.Entry{{Name: "go", Text: "true"}}, true); err != nil {
			t.Fatal(err)
		}
		<-sub.C() // Init announces too
	})
}

func TestRedisNamespacesNeverMeet(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := context.Background()
	a, err := sharedmemory.NewRedis(ctx, srv.URL(), sharedmemory.RedisOptions{Namespace: "team-a"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sharedmemory.NewRedis(ctx, srv.URL(), sharedmemory.RedisOptions{Namespace: "team-b"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := incr(t, a, "default", "n"); err != nil {
		t.Fatal(err)
	}
	if v := view(t, b, "default", "n"); v[0].Set {
		t.Fatalf("team-b sees team-a's value %+v", v)
	}
	if got := strings.TrimSpace(srv.CLI("GET", "parley:team-a:default:n")); got != "1" {
		t.Fatalf("key layout: GET parley:team-a:default:n = %q", got)
	}
}

func TestRedisFirstContactErrorsSayWhatIsWrong(t *testing.T) {
	ctx := context.Background()
	plain := redistest.Start(t, redistest.Options{Password: "s3cret"})
	secure := redistest.Start(t, redistest.Options{TLS: true})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(secure.CAPEM)
	cases := []struct {
		name, url string
		opts      sharedmemory.RedisOptions
		want      string
	}{
		{"bad url", "http://" + plain.Addr(), sharedmemory.RedisOptions{}, "want redis://"},
		{"wrong password", "redis://:nope@" + plain.Addr() + "/0", sharedmemory.RedisOptions{}, "authentication failed"},
		{"no password", "redis://" + plain.Addr() + "/0", sharedmemory.RedisOptions{}, "authentication failed"},
		{"tls to a plain server", "rediss://:s3cret@" + plain.Addr() + "/0", sharedmemory.RedisOptions{ConnectTimeout: time.Second}, "TLS mismatch"},
		{"plain to a tls server", "redis://" + secure.Addr() + "/0", sharedmemory.RedisOptions{}, "use rediss://"},
		{"untrusted certificate", secure.URL(), sharedmemory.RedisOptions{}, "not trusted"},
		{"nothing listening", "redis://127.0.0.1:1/0", sharedmemory.RedisOptions{}, "cannot reach"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := sharedmemory.NewRedis(ctx, c.url, c.opts)
			if err == nil {
				_ = s.Close()
				t.Fatal("connected")
			}
			if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error %q: want %q and no password", err, c.want)
			}
		})
	}
	t.Run("password apart from the URL, TLS with its CA", func(t *testing.T) {
		s, err := sharedmemory.NewRedis(ctx, "redis://"+plain.Addr()+"/0", sharedmemory.RedisOptions{Password: "s3cret"})
		if err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
		s, err = sharedmemory.NewRedis(ctx, secure.URL(), sharedmemory.RedisOptions{RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		if err := incr(t, s, "a", "n"); err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
	})
}

func TestRedisDownFailsStepsThenRecovers(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	s, err := sharedmemory.NewRedis(context.Background(), srv.URL(), sharedmemory.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sub := s.Subscribe("a")
	defer sub.Close()
	if err := incr(t, s, "a", "n"); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	err = s.Update(ctx, "a", []string{"n"}, func(sharedmemory.Txn) error { return nil })
	cancel()
	if err == nil || !strings.Contains(err.Error(), "shared memory redis://127.0.0.1") {
		t.Fatalf("step on a stopped server: %v", err)
	}
	srv.Restart()
	if err := incr(t, s, "a", "n"); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

// redisStore starts a redis-server and a store on it.
func redisStore(t *testing.T) *sharedmemory.Redis {
	t.Helper()
	srv := redistest.Start(t, redistest.Options{})
	s, err := sharedmemory.NewRedis(context.Background(), srv.URL(), sharedmemory.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// blockStep runs a step of space that waits, inside its fn, until release is closed; it
// returns once the step is running, and its outcome comes on the channel.
func blockStep(t *testing.T, s sharedmemory.Store, space string, release chan struct{}) <-chan error {
	t.Helper()
	started, done := make(chan struct{}), make(chan error, 1)
	var once sync.Once
	go func() {
		done <- s.Update(context.Background(), space, []string{"a"}, func(tx sharedmemory.Txn) error {
			once.Do(func() { close(started) })
			<-release
			tx.Set("a", "1")
			return nil
		})
	}()
	<-started
	return done
}

// waitPending waits until n steps of space queue behind the batch in flight.
func waitPending(t *testing.T, s *sharedmemory.Redis, space string, n int) {
	t.Helper()
	for s.PendingSteps(space) != n {
		time.Sleep(time.Millisecond)
	}
}

// TestRedisBatchTakesBackOnlyTheFailedStep: steps that queued behind a batch run together
// in the next one; a step whose fn fails leaves nothing, and the steps after it do not see
// its writes, while theirs are committed.
func TestRedisBatchTakesBackOnlyTheFailedStep(t *testing.T) {
	s := redisStore(t)
	release := make(chan struct{})
	first := blockStep(t, s, "sp", release)
	boom := errors.New("boom")
	failed, seen := make(chan error, 1), make(chan error, 1)
	go func() {
		failed <- s.Update(context.Background(), "sp", []string{"x"}, func(tx sharedmemory.Txn) error {
			tx.Set("x", "bad")
			tx.Set("z", "bad")
			return boom
		})
	}()
	waitPending(t, s, "sp", 1)
	go func() {
		seen <- s.Update(context.Background(), "sp", []string{"x"}, func(tx sharedmemory.Txn) error {
			x, err := tx.Get("x")
			if err != nil {
				return err
			}
			tx.Set("y", "x set: "+strconv.FormatBool(x.Set))
			return nil
		})
	}()
	waitPending(t, s, "sp", 2)
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-failed; !errors.Is(err, boom) {
		t.Errorf("failed step: %v, want boom", err)
	}
	if err := <-seen; err != nil {
		t.Fatal(err)
	}
	v := view(t, s, "sp", "a", "x", "y", "z")
	if v[0].Text != "1" || v[1].Set || v[2].Text != "x set: false" || v[3].Set {
		t.Errorf("values %+v: want a=1, x unset, y=\"x set: false\", z unset", v)
	}
}

// TestRedisQueuedStepGivesUpAlone: a step whose context ends while it waits for the batch
// in flight returns the reason and writes nothing; the steps after it still run.
func TestRedisQueuedStepGivesUpAlone(t *testing.T) {
	s := redisStore(t)
	release := make(chan struct{})
	first := blockStep(t, s, "sp", release)
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		gaveUp <- s.Update(ctx, "sp", nil, func(tx sharedmemory.Txn) error {
			tx.Set("x", "late")
			return nil
		})
	}()
	waitPending(t, s, "sp", 1)
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "waiting for the steps before this one") {
		t.Errorf("queued step: %v", err)
	}
	if n := s.PendingSteps("sp"); n != 0 {
		t.Errorf("%d steps still queued", n)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := incr(t, s, "sp", "n"); err != nil {
		t.Fatal(err)
	}
	if v := view(t, s, "sp", "x", "n"); v[0].Set || v[1].Text != "1" {
		t.Errorf("values %+v: want x unset, n=1", v)
	}
}

// PasswordFrom is asked at each new connection: after the server's password changes and
// the connections are cut, the old one is refused and said to be wrong, the new one
// reconnects; a password that cannot be read says so.
func TestRedisPasswordFromIsReadAtEachConnection(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Password: "first"})
	var mu sync.Mutex
	password, readErr := "first", error(nil)
	s, err := sharedmemory.NewRedis(context.Background(), "redis://"+srv.Addr()+"/0", sharedmemory.RedisOptions{
		PasswordFrom: func() (string, error) {
			mu.Lock()
			defer mu.Unlock()
			return password, readErr
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	set := func(pw string, err error) {
		mu.Lock()
		password, readErr = pw, err
		mu.Unlock()
	}
	srv.SetPassword("second")
	srv.CLI("CLIENT", "KILL", "TYPE", "normal")
	// A pooled connection the server cut may be found dead first; a new one is then made.
	err = nil
	for range 10 {
		if err = s.Ping(context.Background()); err != nil && strings.Contains(err.Error(), "authentication failed") {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("ping with the old password: %v, want an authentication failure", err)
	}
	set("", errors.New("no such file"))
	if err := s.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), "read the password: no such file") {
		t.Fatalf("ping with an unreadable password: %v", err)
	}
	set("second", nil)
	if err := incr(t, s, "a", "n"); err != nil {
		t.Fatalf("a step with the new password: %v", err)
	}
}

// caPool is the CAs a RootCAsFrom gives, changed by the test as a mounted file would be.
type caPool struct {
	mu   sync.Mutex
	pool *x509.CertPool
	err  error
}

func (c *caPool) set(pemCA []byte, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pool, c.err = nil, err
	if pemCA != nil {
		c.pool = x509.NewCertPool()
		c.pool.AppendCertsFromPEM(pemCA)
	}
}

func (c *caPool) get() (*x509.CertPool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pool, c.err
}

// pingUntil pings s until the error says want: a pooled connection the server cut may be
// found dead first, then a new one is made.
func pingUntil(t *testing.T, s *sharedmemory.Redis, want string) error {
	t.Helper()
	var err error
	for range 10 {
		if err = s.Ping(context.Background()); err != nil && strings.Contains(err.Error(), want) {
			return err
		}
	}
	t.Fatalf("ping: %v, want an error saying %q", err, want)
	return nil
}

// RootCAsFrom is asked at each new TLS connection: once the server's certificate is
// issued by a new CA and the connections are cut, the old CA is refused with the usual
// "not trusted" message, the new one reconnects without reopening the store; a CA that did
// not issue the server's certificate, or a CA that cannot be read, fails the connection,
// and no step is made on it.
func TestRedisRootCAsFromIsReadAtEachConnection(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{TLS: true})
	cas := &caPool{}
	cas.set(srv.CAPEM, nil)
	if _, err := sharedmemory.OpenRedis("redis://"+srv.Addr()+"/0", sharedmemory.RedisOptions{RootCAsFrom: cas.get}); err == nil ||
		!strings.Contains(err.Error(), "not rediss://") {
		t.Fatalf("RootCAsFrom with redis://: %v", err)
	}
	// The URL's skip_verify turns verification off, as it does with RootCAs: the CAs are
	// not even read.
	skip, err := sharedmemory.NewRedis(context.Background(), srv.URL()+"?skip_verify=true", sharedmemory.RedisOptions{
		RootCAsFrom: func() (*x509.CertPool, error) { return nil, errors.New("not to be read") },
	})
	if err != nil {
		t.Fatalf("skip_verify: %v", err)
	}
	_ = skip.Close()

	s, err := sharedmemory.NewRedis(context.Background(), srv.URL(), sharedmemory.RedisOptions{RootCAsFrom: cas.get})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := incr(t, s, "a", "n"); err != nil {
		t.Fatal(err)
	}

	srv.RotateCA()
	srv.CLI("CLIENT", "KILL", "TYPE", "normal")
	err = pingUntil(t, s, "the server's TLS certificate is not trusted")
	var certErr *tls.CertificateVerificationError
	if !errors.As(err, &certErr) {
		t.Errorf("ping with the old CA: %v is no *tls.CertificateVerificationError", err)
	}

	cas.set(srv.CAPEM, nil)
	if err := incr(t, s, "a", "n"); err != nil {
		t.Fatalf("a step with the new CA: %v", err)
	}

	refused := func(what, want string) {
		t.Helper()
		srv.CLI("CLIENT", "KILL", "TYPE", "normal")
		pingUntil(t, s, want)
		if err := incr(t, s, "a", "n"); err == nil {
			t.Errorf("a step with %s was made", what)
		}
		if got := strings.TrimSpace(srv.CLI("GET", "parley::a:n")); got != "2" {
			t.Errorf("with %s: GET parley::a:n = %q, want 2", what, got)
		}
	}
	cas.set(redistest.UnrelatedCA(t), nil)
	refused("a CA that did not issue the certificate", "the server's TLS certificate is not trusted")
	cas.set(nil, errors.New("ca.crt holds no PEM certificate"))
	refused("an unreadable CA", "read the CA: ca.crt holds no PEM certificate")
}

// The server's name is verified as crypto/tls verifies it, with RootCAs or RootCAsFrom: a
// DNS name against the certificate's DNS names, an IP address against its IP addresses.
func TestRedisRootCAsFromChecksTheHost(t *testing.T) {
	byIP := redistest.Start(t, redistest.Options{TLS: true})                                    // for 127.0.0.1
	byName := redistest.Start(t, redistest.Options{TLS: true, TLSHosts: []string{"localhost"}}) // for localhost
	url := func(host string, srv *redistest.Server) string {
		return "rediss://" + host + ":" + strconv.Itoa(srv.Port) + "/0"
	}
	cases := []struct {
		name, url string
		ca        []byte
		want      string // the x509 error; "" connects
	}{
		{"IP address in the certificate", url("127.0.0.1", byIP), byIP.CAPEM, ""},
		{"IP address not in the certificate", url("127.0.0.1", byName), byName.CAPEM, "cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs"},
		{"name in the certificate", url("localhost", byName), byName.CAPEM, ""},
		{"name not in the certificate", url("localhost", byIP), byIP.CAPEM, "certificate is not valid for any names, but wanted to match localhost"},
	}
	for _, c := range cases {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(c.ca)
		for opt, o := range map[string]sharedmemory.RedisOptions{
			"RootCAs":     {RootCAs: pool},
			"RootCAsFrom": {RootCAsFrom: func() (*x509.CertPool, error) { return pool, nil }},
		} {
			t.Run(c.name+"/"+opt, func(t *testing.T) {
				s, err := sharedmemory.NewRedis(context.Background(), c.url, o)
				if c.want == "" {
					if err != nil {
						t.Fatal(err)
					}
					_ = s.Close()
					return
				}
				if err == nil {
					_ = s.Close()
					t.Fatal("connected")
				}
				var hostErr x509.HostnameError
				if !strings.Contains(err.Error(), "the server's TLS certificate is not trusted") || !strings.Contains(err.Error(), c.want) ||
					!errors.As(err, &hostErr) {
					t.Fatalf("error %q: want a certificate not trusted for the host", err)
				}
			})
		}
	}
}
