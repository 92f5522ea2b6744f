// Package uplink is the connector's side of the engine channel (docs/design.md §5): it
// dials the engine over TLS, says Hello, streams activities in numbered batches, keeps every
// unacknowledged one in a bounded replay buffer, hands Configs and Orders to the process,
// and redials forever with capped, jittered backoff.
//
// An Uplink is an activity.Sink. Sequence numbers are assigned at Write, once, so a replay
// after a reconnection carries the numbers of the first attempt and the engine's Activity
// names (<connector>-<run>-<seq>) come out the same: replays are idempotent.
//
// Ownership: Run owns the gRPC connection and stream; per stream it runs one sending and
// one receiving goroutine and returns only after both have. Write is called by the activity
// register's single goroutine; Flush and Close by whoever ends the process.
package uplink

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/activity"
)

const (
	// DefaultReplayCapacity is how many activities may wait for the engine's Ack.
	DefaultReplayCapacity = 65536
	// DefaultReplayBytes is how many bytes of encoded activities may wait for the engine's
	// Ack: large inputs reach the byte bound long before the count (docs/hardening.md).
	DefaultReplayBytes = 64 << 20
	// DefaultWindow is how many activities may be sent and not yet acknowledged.
	DefaultWindow = 8192
	// MaxBatch is the most activities in one ActivityBatch.
	MaxBatch = 512
	// MaxBatchBytes bounds a batch's payload (one activity more than that travels alone): a
	// batch of large inputs must stay far below gRPC's 4 MiB default message limit.
	MaxBatchBytes = 1 << 20
	// DefaultHeartbeatInterval is how often counters go to the engine.
	DefaultHeartbeatInterval = 2 * time.Second
	// DefaultAckTimeout is how long sent activities may wait for any word from the engine
	// before the stream is presumed dead: a half-open TCP connection would otherwise hold
	// them until the kernel gives up, many minutes later.
	DefaultAckTimeout = 60 * time.Second
	// DefaultStableAfter is how long a stream must have stayed up for the backoff to start
	// over at its first step.
	DefaultStableAfter = 10 * time.Second
	// byeTimeout bounds the wait for the engine to end the stream after Bye.
	byeTimeout = 10 * time.Second
	// ordersCapacity holds orders the process has not taken yet; orders are rare, and the
	// receiving goroutine must never wait on the process (it carries the acks).
	ordersCapacity = 64
)

// ErrClosed is returned by Write after Close or Flush.
var ErrClosed = errors.New("uplink: closed")

// errDisconnect ends a stream on the engine's DISCONNECT order.
var errDisconnect = errors.New("engine ordered a reconnection")

// Options configure an Uplink.
type Options struct {
	// Address is the engine's host:port.
	Address string
	// TLS returns the client TLS configuration, called at every dial so that a rotated
	// engine CA is picked up.
	TLS func() (*tls.Config, error)
	// Token returns the engine token, read at every dial so that a fixed Secret is picked up.
	Token func() (string, error)
	// Connector, Namespace, Pod and Version are said in Hello.
	Connector, Namespace, Pod, Version string
	// RunID identifies this process in Activity names; default 8 random hex characters.
	RunID string

	// ReplayCapacity bounds the activities kept until acknowledged (default
	// DefaultReplayCapacity); Write blocks while it is full.
	ReplayCapacity int
	// ReplayBytes bounds the encoded size of those activities (default DefaultReplayBytes);
	// Write blocks while one more would exceed it. One activity alone always fits.
	ReplayBytes int
	// Window bounds the activities sent and not yet acknowledged (default DefaultWindow).
	Window int
	// HeartbeatInterval defaults to DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// Heartbeat returns the process's counters; nil sends empty heartbeats.
	Heartbeat func() *enginev1.Heartbeat
	// Backoff spaces redials; zero means DefaultBackoff.
	Backoff Backoff
	// StableAfter defaults to DefaultStableAfter; AckTimeout to DefaultAckTimeout.
	StableAfter, AckTimeout time.Duration

	// Logger hears about connections and errors.
	Logger logr.Logger
	// Registerer, if set, receives the uplink's metrics.
	Registerer prometheus.Registerer
}

// Uplink is the engine client. Create it with New, run it with Run.
type Uplink struct {
	opts    Options
	log     logr.Logger
	run     string
	metrics metrics

	rulesHash atomic.Pointer[string]

	mu sync.Mutex
	// ring holds the encoded activities acked+1 ... last, the oldest at head.
	ring        [][]byte
	head, count int
	// bytes is the size of the entries in ring, bounded by opts.ReplayBytes.
	bytes       int
	acked, last uint64
	// sent is the last seq sent on the current stream; maxSent the last ever sent, to tell
	// replays apart.
	sent, maxSent uint64
	// ackWait is when the sent activities started waiting for the engine (the last Ack, or
	// the first batch sent while nothing was outstanding).
	ackWait time.Time
	// progress is closed and replaced whenever acks free space (Write, Flush wait on it).
	progress chan struct{}
	closed   bool
	dropped  uint64
	bye      *enginev1.Bye
	lastErr  error
	// lastHeartbeat is the last one sent, for the next stream's Hello.
	lastHeartbeat *enginev1.Heartbeat

	closedCh chan struct{}
	// wake tells the sending goroutine there may be something to send.
	wake chan struct{}
	// finished is closed when the stream that carried Bye has ended.
	finished     chan struct{}
	finishedOnce sync.Once

	configs   chan *enginev1.Config
	orders    chan *enginev1.Order
	running   atomic.Bool
	connected atomic.Bool
}

// New returns an uplink; nothing is dialed before Run.
func New(opts Options) (*Uplink, error) {
	if opts.Address == "" {
		return nil, errors.New("uplink: Options.Address is required")
	}
	if opts.TLS == nil || opts.Token == nil {
		return nil, errors.New("uplink: Options.TLS and Options.Token are required")
	}
	if opts.ReplayCapacity <= 0 {
		opts.ReplayCapacity = DefaultReplayCapacity
	}
	if opts.ReplayBytes <= 0 {
		opts.ReplayBytes = DefaultReplayBytes
	}
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if opts.Backoff == (Backoff{}) {
		opts.Backoff = DefaultBackoff
	}
	if opts.StableAfter <= 0 {
		opts.StableAfter = DefaultStableAfter
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = DefaultAckTimeout
	}
	if opts.RunID == "" {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("uplink: run id: %w", err)
		}
		opts.RunID = hex.EncodeToString(b[:])
	}
	u := &Uplink{
		opts:     opts,
		log:      opts.Logger,
		run:      opts.RunID,
		ring:     make([][]byte, opts.ReplayCapacity),
		progress: make(chan struct{}),
		closedCh: make(chan struct{}),
		wake:     make(chan struct{}, 1),
		finished: make(chan struct{}),
		configs:  make(chan *enginev1.Config, 1),
		orders:   make(chan *enginev1.Order, ordersCapacity),
	}
	u.metrics = newMetrics(u)
	if opts.Registerer != nil {
		if err := u.metrics.register(opts.Registerer); err != nil {
			return nil, fmt.Errorf("uplink: metrics: %w", err)
		}
	}
	return u, nil
}

var _ activity.Sink = (*Uplink)(nil)

// RunID is this process's run id, as said in Hello.
func (u *Uplink) RunID() string { return u.run }

// SetRulesHash records the hash of the rules now running, said in the next Hello so that
// the engine resends a Config only when the rules differ.
func (u *Uplink) SetRulesHash(h string) { u.rulesHash.Store(&h) }

// Configs delivers the engine's Configs. Only the latest matters: one not taken yet is
// replaced by a newer one.
func (u *Uplink) Configs() <-chan *enginev1.Config { return u.configs }

// Orders delivers the engine's orders but DISCONNECT, which the uplink obeys itself.
func (u *Uplink) Orders() <-chan *enginev1.Order { return u.orders }

// Write implements activity.Sink: it numbers and buffers the batch for sending, blocking
// while the replay buffer is full by count or by bytes (the register in front keeps
// recording and counts what it must drop). It fails only after Close or Flush.
func (u *Uplink) Write(batch []*v1alpha1.ActivityRecord) error {
	// One allocation per batch; the entries share it and live until acknowledged.
	var buf []byte
	ends := make([]int, len(batch))
	for i, a := range batch {
		buf = activity.AppendJSON(buf, a)
		buf = buf[:len(buf)-1] // the newline separates lines in a file, not messages
		ends[i] = len(buf)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	start := 0
	for i := 0; i < len(batch); {
		if u.closed {
			u.dropped += uint64(len(batch) - i)
			return ErrClosed
		}
		if u.full(ends[i] - start) {
			wait := u.progress
			u.mu.Unlock()
			select {
			case <-wait:
			case <-u.closedCh:
			}
			u.mu.Lock()
			continue
		}
		for ; i < len(batch) && !u.full(ends[i]-start); i++ {
			u.ring[(u.head+u.count)%len(u.ring)] = buf[start:ends[i]:ends[i]]
			u.bytes += ends[i] - start
			start = ends[i]
			u.count++
			u.last++
		}
		u.signal()
	}
	return nil
}

// full says whether an entry of size bytes must wait for acks: the ring is full, or it
// would take the buffer over its byte budget and something is there to be acknowledged.
func (u *Uplink) full(size int) bool {
	return u.count == len(u.ring) || (u.count > 0 && u.bytes+size > u.opts.ReplayBytes)
}

func (u *Uplink) setConnected(up bool) {
	u.connected.Store(up)
	if up {
		u.metrics.connected.Set(1)
	} else {
		u.metrics.connected.Set(0)
	}
}

// signal wakes the sending goroutine without waiting.
func (u *Uplink) signal() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// Close makes Write fail from now on, including a Write blocked on a full buffer. What is
// buffered is still sent; Run keeps running.
func (u *Uplink) Close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closeLocked()
}

func (u *Uplink) closeLocked() {
	if !u.closed {
		u.closed = true
		close(u.closedCh)
	}
}

// Flush ends the channel for a process that stops: it closes the uplink for writes, waits
// until every activity written so far is acknowledged, says Bye with the last sequence
// number, and waits for the engine to end the stream. Run returns after that. ctx bounds it
// all; on expiry the unacknowledged count is in the error.
func (u *Uplink) Flush(ctx context.Context, reason string) error {
	u.mu.Lock()
	u.closeLocked()
	last := u.last
	for u.acked < last {
		wait := u.progress
		u.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			u.mu.Lock()
			n := u.last - u.acked
			u.mu.Unlock()
			return fmt.Errorf("%d activities not acknowledged by the engine: %w", n, ctx.Err())
		}
		u.mu.Lock()
	}
	u.bye = &enginev1.Bye{Reason: reason, LastSeq: last}
	u.mu.Unlock()
	u.signal()
	select {
	case <-u.finished:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("every activity acknowledged, but Bye not delivered: %w", ctx.Err())
	}
}

// Stats are the uplink's counters.
type Stats struct {
	// LastSeq is the sequence number of the last activity written; Acked the last one the
	// engine acknowledged; Buffered those in between.
	LastSeq, Acked uint64
	Buffered       int
	// BufferedBytes is the encoded size of the Buffered activities.
	BufferedBytes int
	// Dropped counts activities refused after Close.
	Dropped uint64
	// Connected says whether a stream is up.
	Connected bool
}

// Stats returns the counters now.
func (u *Uplink) Stats() Stats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return Stats{LastSeq: u.last, Acked: u.acked, Buffered: u.count, BufferedBytes: u.bytes, Dropped: u.dropped, Connected: u.connected.Load()}
}

// LastError is why the last stream ended or could not start; nil if none has.
func (u *Uplink) LastError() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.lastErr
}

// Run dials the engine and keeps a stream up until ctx is cancelled or a Flush has said
// Bye, redialing with backoff whenever a stream ends. It returns nil after Bye, ctx's error
// otherwise, and only once every goroutine it started has returned. Call it once.
func (u *Uplink) Run(ctx context.Context) error {
	if !u.running.CompareAndSwap(false, true) {
		return errors.New("uplink: Run called twice")
	}
	attempt := 0
	for {
		began := time.Now()
		err := u.session(ctx)
		select {
		case <-u.finished:
			return nil
		default:
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		u.mu.Lock()
		u.lastErr = err
		u.mu.Unlock()
		u.metrics.reconnects.Inc()
		if time.Since(began) >= u.opts.StableAfter {
			attempt = 0
		}
		var delay time.Duration
		switch code := status.Code(err); {
		case errors.Is(err, errDisconnect):
			u.log.Info("engine ordered a reconnection; redialing", "address", u.opts.Address)
			attempt = 0
			continue
		case code == codes.PermissionDenied || code == codes.Unauthenticated:
			delay = u.opts.Backoff.Delay(attempt)
			u.log.Error(err, "ENGINE REFUSED THIS CONNECTOR: check the engine token and the connector name (the Secret may be fixed later; retrying)",
				"address", u.opts.Address, "connector", u.opts.Connector, "retryIn", delay.String())
		default:
			delay = u.opts.Backoff.Delay(attempt)
			u.log.Error(err, "engine stream ended; redialing", "address", u.opts.Address, "retryIn", delay.String())
		}
		attempt++
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// session dials once and runs one stream to its end.
func (u *Uplink) session(ctx context.Context) error {
	tlsConfig, err := u.opts.TLS()
	if err != nil {
		return fmt.Errorf("engine TLS configuration: %w", err)
	}
	token, err := u.opts.Token()
	if err != nil {
		return fmt.Errorf("engine token: %w", err)
	}
	// A connection per stream: a DISCONNECT means this engine replica is going away, and
	// a fresh dial lets the Service pick another one.
	conn, err := grpc.NewClient(u.opts.Address,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
		// Pings find a dead engine when nothing awaits an ack; the engine permits one
		// every 10s.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 20 * time.Second}))
	if err != nil {
		return fmt.Errorf("engine address %q: %w", u.opts.Address, err)
	}
	defer conn.Close()

	// Cancelled on every return, so that a failed dial leaves no context behind.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(sctx)
	stream, err := enginev1.NewEngineClient(conn).Connect(gctx)
	if err != nil {
		return err
	}
	hello := &enginev1.Hello{
		Connector: u.opts.Connector, Namespace: u.opts.Namespace, Pod: u.opts.Pod,
		Token: token, Version: u.opts.Version, Run: u.run,
	}
	if h := u.rulesHash.Load(); h != nil {
		hello.RulesHash = *h
	}
	u.mu.Lock()
	hello.LastHeartbeat = u.lastHeartbeat
	if u.sent > u.acked {
		u.log.Info("replaying unacknowledged activities", "fromSeq", u.acked+1, "toSeq", u.sent)
	}
	u.sent = u.acked // everything unacknowledged goes again, with the same seqs
	u.ackWait = time.Now()
	u.mu.Unlock()

	byeSent := make(chan struct{})
	g.Go(func() error { return u.receive(stream) })
	g.Go(func() error { return u.send(gctx, stream, hello, byeSent) })
	err = g.Wait()
	u.setConnected(false)
	select {
	case <-byeSent:
		// The engine has all activities and knows this process ends: however the stream
		// ended, there is nothing left to do.
		u.finishedOnce.Do(func() { close(u.finished) })
		return nil
	default:
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = errors.New("engine ended the stream")
	}
	return err
}

// receive handles the engine's messages until the stream ends.
func (u *Uplink) receive(stream grpc.BidiStreamingClient[enginev1.ConnectorMessage, enginev1.EngineMessage]) error {
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		switch m := m.Message.(type) {
		case *enginev1.EngineMessage_Ack:
			u.ack(m.Ack.GetUpToSeq())
		case *enginev1.EngineMessage_Config:
			u.deliverConfig(m.Config)
		case *enginev1.EngineMessage_Order:
			if m.Order.GetKind() == enginev1.Order_DISCONNECT {
				return fmt.Errorf("%w: %s", errDisconnect, m.Order.GetReason())
			}
			select {
			case u.orders <- m.Order:
			default:
				u.log.Error(nil, "orders not taken by the process; order dropped", "kind", m.Order.GetKind().String())
			}
		}
		u.mu.Lock()
		u.ackWait = time.Now()
		u.mu.Unlock()
	}
}

// deliverConfig replaces a Config the process has not taken yet. This goroutine is the only
// sender, so after the drain the send cannot block.
func (u *Uplink) deliverConfig(c *enginev1.Config) {
	select {
	case <-u.configs:
	default:
	}
	select {
	case u.configs <- c:
	default:
	}
}

// ack drops acknowledged activities and wakes whoever waits for room.
func (u *Uplink) ack(upTo uint64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	// The engine may acknowledge what an earlier stream carried before this one resends
	// it, but never what was not sent at all: that would be a bug, and losing activities to
	// it worse than replaying them.
	upTo = min(upTo, u.maxSent)
	if upTo <= u.acked {
		return
	}
	u.sent = max(u.sent, upTo)
	n := int(upTo - u.acked)
	for i := range n {
		j := (u.head + i) % len(u.ring)
		u.bytes -= len(u.ring[j])
		u.ring[j] = nil
	}
	u.head = (u.head + n) % len(u.ring)
	u.count -= n
	u.acked = upTo
	u.metrics.acked.Add(float64(n))
	close(u.progress)
	u.progress = make(chan struct{})
	u.signal() // the window has room again
}

// send is the stream's only sender: Hello, then batches within the window, heartbeats, and
// Bye when Flush asks for it.
func (u *Uplink) send(ctx context.Context, stream grpc.BidiStreamingClient[enginev1.ConnectorMessage, enginev1.EngineMessage], hello *enginev1.Hello, byeSent chan<- struct{}) error {
	if err := stream.Send(&enginev1.ConnectorMessage{Message: &enginev1.ConnectorMessage_Hello{Hello: hello}}); err != nil {
		return err
	}
	u.setConnected(true)
	u.log.Info("connected to the engine", "address", u.opts.Address, "run", u.run)
	heartbeat := time.NewTicker(u.opts.HeartbeatInterval)
	defer heartbeat.Stop()
	for {
		// Heartbeats go out between batches too, or a busy connector would never send one.
		select {
		case <-heartbeat.C:
			if err := u.heartbeat(stream); err != nil {
				return err
			}
		default:
		}
		batch, bye := u.next()
		if batch != nil {
			if err := stream.Send(&enginev1.ConnectorMessage{Message: &enginev1.ConnectorMessage_Activities{Activities: batch}}); err != nil {
				return err
			}
			continue
		}
		if bye != nil {
			// The last counters first: what was dropped since the previous heartbeat must
			// reach the connector's status too.
			if err := u.heartbeat(stream); err != nil {
				return err
			}
			if err := stream.Send(&enginev1.ConnectorMessage{Message: &enginev1.ConnectorMessage_Bye{Bye: bye}}); err != nil {
				return err
			}
			close(byeSent)
			if err := stream.CloseSend(); err != nil {
				return err
			}
			u.log.Info("said Bye to the engine", "reason", bye.GetReason(), "lastSeq", bye.GetLastSeq())
			t := time.NewTimer(byeTimeout)
			defer t.Stop()
			select {
			case <-ctx.Done(): // the engine ended the stream
				return nil
			case <-t.C:
				return errors.New("engine did not end the stream after Bye")
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-u.wake:
		case <-heartbeat.C:
			if err := u.heartbeat(stream); err != nil {
				return err
			}
		}
	}
}

func (u *Uplink) heartbeat(stream grpc.BidiStreamingClient[enginev1.ConnectorMessage, enginev1.EngineMessage]) error {
	u.mu.Lock()
	silent := u.sent > u.acked && time.Since(u.ackWait) > u.opts.AckTimeout
	u.mu.Unlock()
	if silent {
		return fmt.Errorf("engine acknowledged nothing for %v", u.opts.AckTimeout)
	}
	hb := &enginev1.Heartbeat{}
	if u.opts.Heartbeat != nil {
		hb = u.opts.Heartbeat()
	}
	if err := stream.Send(&enginev1.ConnectorMessage{Message: &enginev1.ConnectorMessage_Heartbeat{Heartbeat: hb}}); err != nil {
		return err
	}
	u.mu.Lock()
	u.lastHeartbeat = hb
	u.mu.Unlock()
	return nil
}

// next takes the next batch to send within the window, marking it sent; or, with nothing to
// send, the Bye Flush asked for.
func (u *Uplink) next() (*enginev1.ActivityBatch, *enginev1.Bye) {
	u.mu.Lock()
	defer u.mu.Unlock()
	room := u.opts.Window - int(u.sent-u.acked)
	pending := int(u.last - u.sent)
	if pending == 0 || room <= 0 {
		if pending == 0 && u.sent == u.acked {
			return nil, u.bye
		}
		return nil, nil
	}
	n := min(pending, room, MaxBatch)
	b := &enginev1.ActivityBatch{FirstSeq: u.sent + 1, Activities: make([][]byte, 0, n)}
	size := 0
	for i := range n {
		a := u.ring[(u.head+int(u.sent-u.acked)+i)%len(u.ring)]
		if i > 0 && size+len(a) > MaxBatchBytes {
			break
		}
		size += len(a)
		b.Activities = append(b.Activities, a)
	}
	if u.sent == u.acked {
		u.ackWait = time.Now()
	}
	first := u.sent + 1
	u.sent += uint64(len(b.Activities))
	u.metrics.sent.Add(float64(len(b.Activities)))
	if first <= u.maxSent {
		u.metrics.replayed.Add(float64(min(u.sent, u.maxSent) - first + 1))
	}
	u.maxSent = max(u.maxSent, u.sent)
	return b, nil
}
