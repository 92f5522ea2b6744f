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
	// RootCAs verify a rediss:// server instead of the system's roots.
	RootCAs *x509.CertPool
	// ConnectTimeout bounds the first contact in NewRedis. Default 5s.
	ConnectTimeout time.Duration
}

// Redis is a store on a Redis or Valkey server: optimistic transactions (WATCH, GET, then
// MULTI/SET/PUBLISH/EXEC), retried on conflict.
type Redis struct {
	client *redis.Client
	ns     string
	where  string // the URL without its password, for messages
}

// NewRedis connects to rawURL (redis://[user:pass@]host:port/db, rediss:// for TLS) and
// checks it answers, so that a bad URL, a wrong password or a TLS mismatch is said at once.
func NewRedis(ctx context.Context, rawURL string, o RedisOptions) (*Redis, error) {
	where := Redact(rawURL)
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("shared memory %s: %w (want redis://[user:password@]host:port/db or rediss:// for TLS)", where, err)
	}
	if o.Password != "" {
		opts.Password = o.Password
	}
	if o.RootCAs != nil {
		if opts.TLSConfig == nil {
			return nil, fmt.Errorf("shared memory %s: a CA is given but the URL is not rediss://", where)
		}
		opts.TLSConfig.RootCAs = o.RootCAs
	}
	if opts.TLSConfig != nil {
		opts.TLSConfig.MinVersion = tls.VersionTLS12
	}
	// Steps carry their own short deadline; the client must not add retries behind it.
	opts.MaxRetries = -1
	opts.ContextTimeoutEnabled = true
	opts.Protocol = 2
	opts.DisableIdentity = true
	r := &Redis{client: redis.NewClient(opts), ns: o.Namespace, where: where}
	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := r.client.Ping(pctx).Err(); err != nil {
		_ = r.client.Close()
		return nil, r.explain(err, opts.TLSConfig != nil)
	}
	return r, nil
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
	err    error
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
	if _, ok := t.writes[name]; !ok {
		t.order = append(t.order, name)
	}
	t.writes[name] = text
}

var errRetry = errors.New("retry")

// Update runs fn in an optimistic transaction, again while another writer gets in between.
func (r *Redis) Update(ctx context.Context, space string, names []string, fn func(Txn) error) error {
	for attempt := range maxAttempts {
		err := r.attempt(ctx, space, names, fn)
		if !errors.Is(err, errRetry) {
			return err
		}
		if attempt > 2 {
			// Many writers on one key: spread them out a little.
			d := time.Duration(rand.Int64N(int64(attempt) * int64(50*time.Microsecond)))
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return fmt.Errorf("shared memory %s: %w", r.where, ctx.Err())
			}
		}
	}
	return ErrConflict
}

func (r *Redis) attempt(ctx context.Context, space string, names []string, fn func(Txn) error) error {
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
	err := fn(t)
	if t.err != nil {
		return t.err // the connection failed under fn: its state is unknown, it is not reused
	}
	watching = watching || len(t.read) > 0
	if err != nil || len(t.order) == 0 {
		if watching {
			_ = conn.Do(ctx, "UNWATCH").Err()
		}
		return err
	}
	_, err = conn.TxPipelined(ctx, func(p redis.Pipeliner) error {
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
