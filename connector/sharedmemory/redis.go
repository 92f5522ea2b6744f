package sharedmemory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configure a Redis or Valkey store beyond its URL.
type RedisOptions struct {
	// Namespace prefixes every key (the ExternalConnector's namespace in the cluster; empty
	// outside it).
	Namespace string
	// Password, when set, replaces the URL's (the cluster hands it apart from the URL).
	Password string
	// PasswordFrom, when set, gives the password at each new connection to the store, in
	// place of Password ("" from it: the URL's): a mounted Secret's file read again, so that
	// once the store's password is rotated and the file updated, reconnections use the new
	// one without a restart. Connections already authenticated stay as they are.
	PasswordFrom func() (string, error)
	// RootCAs verify a rediss:// server instead of the system's roots.
	RootCAs *x509.CertPool
	// RootCAsFrom, when set, gives the CAs at each new TLS connection to the store, in
	// place of RootCAs (nil from it: the system's roots): a mounted Secret's file read
	// again, so that once the store's CA is rotated and the file updated, reconnections
	// verify the server against the new one without a restart. An error from it fails that
	// connection, with the error: a connection is never made unverified, nor verified
	// against CAs the file no longer holds. Connections already open stay as they are.
	RootCAsFrom func() (*x509.CertPool, error)
	// ConnectTimeout bounds the first contact in NewRedis. Default 5s.
	ConnectTimeout time.Duration
}

// CAFile is a RedisOptions.RootCAsFrom that reads the PEM CA bundle at path again at each
// call: a mounted Secret's file, or a file an operator replaces when the store's CA is
// rotated. A file that is gone or holds no PEM certificate is an error, which fails the
// connection being made (never a fallback to the CAs read before).
func CAFile(path string) func() (*x509.CertPool, error) {
	return func() (*x509.CertPool, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%s holds no PEM certificate", path)
		}
		return pool, nil
	}
}

// Redis is a store on a Redis or Valkey server: optimistic transactions (WATCH and MGET in
// one round trip, then MULTI/SET/PUBLISH/EXEC in another), retried on conflict.
//
// Steps of one memory space never race each other inside the process: they would only make
// each other's EXEC fail (WATCH sees the other's write) and retry, which is what made the
// parallel conversations of one connector crawl. Instead, while a batch of a space's steps
// is in flight, the steps that arrive queue up, and the next batch runs them all in one
// transaction, one after the other against the same snapshot (each sees the writes of those
// before it): two round trips for the whole batch. Only steps of other processes can
// conflict with a batch, and the optimistic transaction is what keeps those atomic.
type Redis struct {
	client *redis.Client
	ns     string
	where  string // the URL without its password, for messages
	useTLS bool

	mu     sync.Mutex
	queues map[string]*stepQueue // per space
}

// stepQueue holds the steps of one space waiting for the batch in flight to end.
type stepQueue struct {
	pending []*step
	running bool // a leader is running a batch
}

// step is one call of Update.
type step struct {
	ctx    context.Context
	names  []string
	fn     func(Txn) error
	result chan error    // the step's outcome, once a batch ran it
	lead   chan struct{} // this step's goroutine is to run the next batch
}

// NewRedis connects to rawURL (redis://[user:pass@]host:port/db, rediss:// for TLS) and
// checks it answers, so that a bad URL, a wrong password or a TLS mismatch is said at once.
func NewRedis(ctx context.Context, rawURL string, o RedisOptions) (*Redis, error) {
	r, err := OpenRedis(rawURL, o)
	if err != nil {
		return nil, err
	}
	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := r.Ping(pctx); err != nil {
		_ = r.client.Close()
		return nil, err
	}
	return r, nil
}

// OpenRedis is NewRedis without the first contact: for a process that must start while
// the store is down (a connector pod), and learns of it from Ping and its steps.
func OpenRedis(rawURL string, o RedisOptions) (*Redis, error) {
	where := Redact(rawURL)
	opts, err := parseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("shared memory %s: %w", where, err)
	}
	if o.Password != "" {
		opts.Password = o.Password
	}
	if from := o.PasswordFrom; from != nil {
		user, urlPassword := opts.Username, opts.Password
		opts.CredentialsProviderContext = func(context.Context) (string, string, error) {
			pw, err := from()
			if err != nil {
				return "", "", fmt.Errorf("read the password: %w", err)
			}
			if pw == "" {
				pw = urlPassword
			}
			return user, pw, nil
		}
	}
	if o.RootCAs != nil || o.RootCAsFrom != nil {
		if opts.TLSConfig == nil {
			return nil, fmt.Errorf("shared memory %s: a CA is given but the URL is not rediss://", where)
		}
		opts.TLSConfig.RootCAs = o.RootCAs
	}
	// The URL's skip_verify asks for no verification at all: as with RootCAs, the CAs are
	// then not used.
	if from := o.RootCAsFrom; from != nil && !opts.TLSConfig.InsecureSkipVerify {
		if err := verifyWithRootsFrom(opts.TLSConfig, from); err != nil {
			return nil, fmt.Errorf("shared memory %s: %w", where, err)
		}
	}
	if opts.TLSConfig != nil {
		opts.TLSConfig.MinVersion = tls.VersionTLS12
	}
	// Steps carry their own short deadline; the client must not add retries behind it.
	opts.MaxRetries = -1
	opts.ContextTimeoutEnabled = true
	opts.Protocol = 2
	opts.DisableIdentity = true
	return &Redis{client: redis.NewClient(opts), ns: o.Namespace, where: where, useTLS: opts.TLSConfig != nil,
		queues: map[string]*stepQueue{}}, nil
}

// verifyWithRootsFrom makes cfg verify the server's certificate, at each handshake,
// against the CAs from gives then, instead of against cfg.RootCAs.
//
// crypto/tls reads RootCAs from the Config a connection is made with, and go-redis makes
// every connection with the one Config: a pool set there stays for the client's life, and
// after a CA rotation every reconnection would fail until a restart. The way crypto/tls
// documents for roots that change is to turn its own verification off (InsecureSkipVerify)
// and make the whole of it in VerifyConnection, which runs at every handshake, before the
// connection is used. It verifies what crypto/tls would: the server's certificate chains
// up to the CAs from gives (the server's other certificates as intermediates), at the
// current time, for server authentication, and for the URL's host (a DNS name, or an IP
// address against the IP SANs, as x509's VerifyHostname does). crypto/tls still checks, as
// always, that the server holds the certificate's key. A failure is a
// *tls.CertificateVerificationError, as crypto/tls's own, so that Ping says the
// certificate is not trusted.
//
// When from fails (a CA file unreadable or without a PEM certificate), the handshake fails
// with its error: never unverified, nor against the CAs read before. Falling back to those
// would hide a broken rotation, and keep trusting a CA the rotation meant to retire; and
// there is no transient failure to ride out: the kubelet swaps a mounted Secret's files in
// one rename, and the operator hands out only a CA file it could use. Ping (and so a
// connector pod's heartbeat) then says what is wrong.
func verifyWithRootsFrom(cfg *tls.Config, from func() (*x509.CertPool, error)) error {
	// What crypto/tls would verify the name against: DialWithDialer fills an empty
	// ServerName in from the address only on a copy of the Config, and x509 checks no name
	// at all against an empty one.
	host := cfg.ServerName
	if host == "" {
		return errors.New("no server name to verify the TLS certificate against")
	}
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return &tls.CertificateVerificationError{Err: errors.New("the server sent no certificate")}
		}
		roots, err := from()
		if err != nil {
			return fmt.Errorf("read the CA: %w", err)
		}
		now := time.Now()
		if cfg.Time != nil {
			now = cfg.Time()
		}
		opts := x509.VerifyOptions{
			Roots:         roots,
			Intermediates: x509.NewCertPool(),
			DNSName:       host,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
			return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
		}
		return nil
	}
	return nil
}

// Ping checks that the store answers, and says what is wrong when it does not (a wrong
// password, a TLS mismatch, no server).
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return r.explain(err, r.useTLS)
	}
	return nil
}

// CheckURL says whether OpenRedis takes rawURL: the operator checks the URL it hands to
// every connector pod with it, so that a URL the pods would refuse stops the operator, once,
// rather than every pod.
func CheckURL(rawURL string) error {
	_, err := parseURL(rawURL)
	return err
}

func parseURL(rawURL string) (*redis.Options, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w (want redis://[user:password@]host:port/db or rediss:// for TLS)", err)
	}
	return opts, nil
}

// Redact is rawURL with its password replaced by "xxxxx".
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// explain turns a first-contact failure into what the user can act on.
func (r *Redis) explain(err error, useTLS bool) error {
	msg := err.Error()
	var recordErr tls.RecordHeaderError
	var certErr *tls.CertificateVerificationError
	var opErr *net.OpError
	switch {
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "NOAUTH"), strings.Contains(msg, "invalid password"), strings.Contains(msg, "AUTH"):
		return fmt.Errorf("shared memory %s: authentication failed, check the user and password: %w", r.where, err)
	case errors.As(err, &recordErr):
		return fmt.Errorf("shared memory %s: TLS mismatch, the server does not speak TLS (use redis://): %w", r.where, err)
	case errors.As(err, &certErr), strings.Contains(msg, "x509:"):
		return fmt.Errorf("shared memory %s: the server's TLS certificate is not trusted (give its CA): %w", r.where, err)
	case useTLS && errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("shared memory %s: no TLS handshake: TLS mismatch? a plain server needs redis://: %w", r.where, err)
	case !useTLS && (errors.Is(err, net.ErrClosed) || strings.Contains(msg, "EOF") || strings.Contains(msg, "connection reset")):
		return fmt.Errorf("shared memory %s: the server closed the connection; if it requires TLS, use rediss://: %w", r.where, err)
	case errors.As(err, &opErr):
		return fmt.Errorf("shared memory %s: cannot reach the server: %w", r.where, err)
	}
	return fmt.Errorf("shared memory %s: %w", r.where, err)
}

// String names the store for messages, without its password.
func (r *Redis) String() string { return r.where }

func (r *Redis) key(space, name string) string { return Key(r.ns, space, name) }

type redisTxn struct {
	ctx    context.Context
	conn   *redis.Conn
	r      *Redis
	space  string
	read   map[string]Value
	writes map[string]string
	order  []string
	undo   []undo // to take back the writes of a step of the batch that failed
	err    error
}

// undo restores a write: the value before it, or none.
type undo struct {
	name, prev string
	had        bool
}

// rollback takes back the writes made since the undo log had mark entries.
func (t *redisTxn) rollback(mark int) {
	for i := len(t.undo) - 1; i >= mark; i-- {
		u := t.undo[i]
		if u.had {
			t.writes[u.name] = u.prev
		} else {
			delete(t.writes, u.name)
			t.order = t.order[:len(t.order)-1] // it was appended by this write
		}
	}
	t.undo = t.undo[:mark]
}

func (t *redisTxn) Get(name string) (Value, error) {
	if v, ok := t.writes[name]; ok {
		return Value{Text: v, Set: true}, nil
	}
	if v, ok := t.read[name]; ok {
		return v, nil
	}
	// Not fetched ahead: watch it too, then read it.
	k := t.r.key(t.space, name)
	if err := t.conn.Do(t.ctx, "WATCH", k).Err(); err != nil {
		return Value{}, t.fail(err)
	}
	s, err := t.conn.Get(t.ctx, k).Result()
	switch {
	case errors.Is(err, redis.Nil):
		t.read[name] = Value{}
	case err != nil:
		return Value{}, t.fail(err)
	default:
		t.read[name] = Value{Text: s, Set: true}
	}
	return t.read[name], nil
}

func (t *redisTxn) fail(err error) error {
	t.err = fmt.Errorf("shared memory %s: %w", t.r.where, err)
	return t.err
}

func (t *redisTxn) Set(name, text string) {
	prev, had := t.writes[name]
	if !had {
		t.order = append(t.order, name)
	}
	t.undo = append(t.undo, undo{name: name, prev: prev, had: had})
	t.writes[name] = text
}

var errRetry = errors.New("retry")

// Update runs fn as one step of a batch (see Redis): in an optimistic transaction, again
// while another process's writer gets in between.
func (r *Redis) Update(ctx context.Context, space string, names []string, fn func(Txn) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("shared memory %s: %w", r.where, err)
	}
	s := &step{ctx: ctx, names: names, fn: fn, result: make(chan error, 1), lead: make(chan struct{}, 1)}
	r.mu.Lock()
	q := r.queues[space]
	if q == nil {
		q = &stepQueue{}
		r.queues[space] = q
	}
	q.pending = append(q.pending, s)
	if !q.running {
		q.running = true
		s.lead <- struct{}{}
	}
	r.mu.Unlock()
	for {
		select {
		case err := <-s.result:
			return err
		case <-s.lead:
			r.lead(space, q)
		case <-ctx.Done():
			if err, ok := r.withdraw(space, q, s); ok {
				return err
			}
			// A batch holds the step: its outcome comes, bounded by the batch's deadline.
			return <-s.result
		}
	}
}

// lead runs one batch of everything pending on q, then hands the lead to the first step
// that arrived meanwhile, so that no caller stays a leader for others' steps.
func (r *Redis) lead(space string, q *stepQueue) {
	r.mu.Lock()
	batch := make([]*step, 0, len(q.pending))
	for _, s := range q.pending {
		if err := s.ctx.Err(); err != nil {
			s.result <- fmt.Errorf("shared memory %s: %w", r.where, err)
			continue
		}
		batch = append(batch, s)
	}
	q.pending = nil
	r.mu.Unlock()

	if len(batch) > 0 {
		errs := r.batch(space, batch)
		for i, s := range batch {
			s.result <- errs[i]
		}
	}

	r.mu.Lock()
	r.handOver(q)
	r.mu.Unlock()
}

// handOver gives the lead to the first pending step, or ends the run; r.mu is held.
func (r *Redis) handOver(q *stepQueue) {
	if len(q.pending) > 0 {
		q.pending[0].lead <- struct{}{}
		return
	}
	q.running = false
}

// withdraw takes s out of q when no batch holds it yet (ok), passing on the lead if s had
// been handed it.
func (r *Redis) withdraw(space string, q *stepQueue, s *step) (err error, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := slices.Index(q.pending, s)
	if i < 0 {
		return nil, false
	}
	q.pending = slices.Delete(q.pending, i, i+1)
	select {
	case <-s.lead:
		r.handOver(q)
	default:
	}
	return fmt.Errorf("shared memory %s: waiting for the steps before this one: %w", r.where, s.ctx.Err()), true
}

// batch runs steps in one transaction, again while another process's writer gets in
// between, and returns each step's outcome.
func (r *Redis) batch(space string, steps []*step) []error {
	// The batch is bounded by the earliest deadline of its steps (they share the
	// connector's step timeout), not cancelled by one caller giving up.
	ctx := context.Background()
	var deadline time.Time
	for _, s := range steps {
		if d, ok := s.ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
			deadline = d
		}
	}
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	var names []string
	for _, s := range steps {
		for _, n := range s.names {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	errs := make([]error, len(steps))
	for attempt := range maxAttempts {
		clear(errs)
		err := r.attempt(ctx, space, names, steps, errs)
		switch {
		case err == nil:
			return errs
		case !errors.Is(err, errRetry):
			// Nothing was written: each step says so with the store's error, but one whose
			// own fn failed keeps that reason.
			for i, e := range errs {
				if e == nil {
					errs[i] = err
				}
			}
			return errs
		}
		if attempt > 2 {
			// Many writers on one key: spread them out a little.
			d := time.Duration(rand.Int64N(int64(attempt) * int64(50*time.Microsecond)))
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return fill(errs, fmt.Errorf("shared memory %s: %w", r.where, ctx.Err()))
			}
		}
	}
	return fill(errs, ErrConflict)
}

func fill(errs []error, err error) []error {
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// attempt runs each step's fn in turn against one snapshot, setting errs[i] to the error of
// a step whose fn failed (its writes taken back), and commits the others' writes. It
// returns errRetry when another writer changed a watched variable, or a store error.
func (r *Redis) attempt(ctx context.Context, space string, names []string, steps []*step, errs []error) error {
	conn := r.client.Conn()
	defer func() { _ = conn.Close() }()
	t := &redisTxn{ctx: ctx, conn: conn, r: r, space: space, read: make(map[string]Value, len(names)), writes: map[string]string{}}
	watching := len(names) > 0
	if watching {
		keys := make([]any, 0, len(names)+1)
		keys = append(keys, "WATCH")
		mkeys := make([]string, len(names))
		for i, n := range names {
			mkeys[i] = r.key(space, n)
			keys = append(keys, mkeys[i])
		}
		var mget *redis.SliceCmd
		if _, err := conn.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Do(ctx, keys...)
			mget = p.MGet(ctx, mkeys...)
			return nil
		}); err != nil {
			return fmt.Errorf("shared memory %s: %w", r.where, err)
		}
		for i, v := range mget.Val() {
			if s, ok := v.(string); ok {
				t.read[names[i]] = Value{Text: s, Set: true}
			} else {
				t.read[names[i]] = Value{}
			}
		}
	}
	for i, s := range steps {
		mark := len(t.undo)
		errs[i] = s.fn(t)
		if t.err != nil {
			return t.err // the connection failed under fn: its state is unknown, it is not reused
		}
		if errs[i] != nil {
			t.rollback(mark)
		}
	}
	watching = watching || len(t.read) > 0
	if len(t.order) == 0 {
		if watching {
			_ = conn.Do(ctx, "UNWATCH").Err()
		}
		return nil
	}
	_, err := conn.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, n := range t.order {
			p.Set(ctx, r.key(space, n), t.writes[n], 0)
		}
		p.Publish(ctx, Channel(r.ns, space), "")
		return nil
	})
	switch {
	case errors.Is(err, redis.TxFailedErr):
		return errRetry
	case err != nil:
		return fmt.Errorf("shared memory %s: %w", r.where, err)
	}
	return nil
}

// View reads names of space with MGET.
func (r *Redis) View(ctx context.Context, space string, names []string) ([]Value, error) {
	if len(names) == 0 {
		return nil, nil
	}
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = r.key(space, n)
	}
	vals, err := r.client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("shared memory %s: %w", r.where, err)
	}
	out := make([]Value, len(names))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			out[i] = Value{Text: s, Set: true}
		}
	}
	return out, nil
}

// Init writes entries with SET (overwrite) or SETNX, and announces the change.
func (r *Redis) Init(ctx context.Context, space string, entries []Entry, overwrite bool) error {
	if len(entries) == 0 {
		return nil
	}
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range entries {
			if overwrite {
				p.Set(ctx, r.key(space, e.Name), e.Text, 0)
			} else {
				p.SetNX(ctx, r.key(space, e.Name), e.Text, 0)
			}
		}
		p.Publish(ctx, Channel(r.ns, space), "")
		return nil
	})
	if err != nil {
		return fmt.Errorf("shared memory %s: init: %w", r.where, err)
	}
	return nil
}

// Subscribe listens on space's channel. go-redis resubscribes after a lost connection;
// what changed meanwhile is caught by the waiter's own re-checks.
func (r *Redis) Subscribe(space string) Subscription {
	ps := r.client.Subscribe(context.Background(), Channel(r.ns, space))
	s := &subscription{c: make(chan struct{}, 1)}
	var wg sync.WaitGroup
	msgs := ps.Channel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range msgs {
			signal(s.c)
		}
	}()
	var once sync.Once
	s.close = func() {
		once.Do(func() {
			_ = ps.Close()
			wg.Wait()
		})
	}
	return s
}

// Close closes the client's connections.
func (r *Redis) Close() error { return r.client.Close() }
