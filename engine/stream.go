package engine

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"github.com/parley-dev/parley/api/v1alpha1"
)

// helloTimeout bounds how long a new stream may stay silent before its Hello.
const helloTimeout = 10 * time.Second

// resync re-evaluates a stream's config and orders even without a change notification.
const resync = 30 * time.Second

// stream is one connector process's open stream.
type stream struct {
	e         *Engine
	srv       enginev1.Engine_ConnectServer
	connector types.NamespacedName
	pod       string
	run       runKey
	rs        *runState
	cs        *connectorState
	log       logr.Logger

	active atomic.Int64
	// shared is what the last heartbeat said of the process's shared-memory store.
	shared atomic.Pointer[enginev1.SharedMemory]
	// kick and ack wake the sender: something may have changed; acks advanced.
	kick chan struct{}
	ack  chan struct{}
	// disconnect asks the sender to order a reconnection (the engine is stopping).
	disconnect chan struct{}
	bye        atomic.Bool

	// Sender state, owned by the sender goroutine.
	sentConfig *enginev1.Config
	sentPaused *bool
	sentEnd    bool
	sentAck    uint64
	helloHash  string
}

func (s *stream) signalAck()  { signal(s.ack) }
func (s *stream) signalKick() { signal(s.kick) }

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Connect serves one connector process's stream: Hello and authentication, then activity
// batches and heartbeats in, configs, acks and orders out.
func (e *Engine) Connect(srv enginev1.Engine_ConnectServer) error {
	hello, err := recvHello(srv)
	if err != nil {
		e.metrics.hellos.WithLabelValues("invalid").Inc()
		return err
	}
	key := types.NamespacedName{Namespace: hello.GetNamespace(), Name: hello.GetConnector()}
	log := e.log.WithValues("connector", key.String(), "pod", hello.GetPod(), "run", hello.GetRun())
	if err := e.authenticate(srv.Context(), key, hello.GetToken()); err != nil {
		e.metrics.hellos.WithLabelValues("denied").Inc()
		log.Info("refused a connector stream", "reason", err.Error())
		return err
	}
	e.metrics.hellos.WithLabelValues("accepted").Inc()

	s := &stream{
		e: e, srv: srv, connector: key, pod: hello.GetPod(), log: log,
		run:  runKey{connector: key, run: hello.GetRun()},
		kick: make(chan struct{}, 1), ack: make(chan struct{}, 1), disconnect: make(chan struct{}, 1),
		helloHash: hello.GetRulesHash(),
	}
	s.rs = e.run(s.run)
	s.rs.continueHeartbeats(hello.GetLastHeartbeat())
	s.cs = e.connector(key)
	e.attach(s)
	log.Info("connector stream open", "version", hello.GetVersion())

	ctx, cancel := context.WithCancel(srv.Context())
	var wg sync.WaitGroup
	sendErr := make(chan error, 1)
	wg.Go(func() { sendErr <- s.sendLoop(ctx) })
	s.signalKick()
	s.signalAck()

	err = s.recvLoop()
	cancel()
	wg.Wait()
	e.detach(s)
	if err == nil {
		select {
		case err = <-sendErr:
		default:
		}
	}
	if s.bye.Load() {
		e.forgetRun(s.run)
		log.Info("connector stream closed with Bye")
		return nil
	}
	if err != nil && status.Code(err) != codes.Canceled {
		log.Info("connector stream lost", "error", err.Error())
	}
	return err
}

// recvHello reads the stream's first message, which must be a complete Hello.
func recvHello(srv enginev1.Engine_ConnectServer) (*enginev1.Hello, error) {
	type result struct {
		msg *enginev1.ConnectorMessage
		err error
	}
	got := make(chan result, 1)
	go func() {
		m, err := srv.Recv()
		got <- result{m, err}
	}()
	var r result
	select {
	case r = <-got:
	case <-time.After(helloTimeout):
		return nil, status.Error(codes.DeadlineExceeded, "no Hello within "+helloTimeout.String())
	}
	if r.err != nil {
		return nil, r.err
	}
	h := r.msg.GetHello()
	switch {
	case h == nil:
		return nil, status.Error(codes.InvalidArgument, "the first message must be Hello")
	case h.GetConnector() == "" || h.GetNamespace() == "":
		return nil, status.Error(codes.InvalidArgument, "Hello must name the connector and its namespace")
	case len(validation.IsDNS1123Subdomain(h.GetConnector())) > 0 || len(validation.IsDNS1123Label(h.GetNamespace())) > 0:
		return nil, status.Error(codes.InvalidArgument, "Hello names an invalid connector or namespace")
	case h.GetRun() == "" || len(validation.IsDNS1123Label(h.GetRun())) > 0 || len(h.GetRun()) > 16:
		return nil, status.Error(codes.InvalidArgument, "Hello must carry a run id of at most 16 lowercase letters and digits")
	}
	return h, nil
}

// authenticate checks token against the connector's engine Secret in constant time. The
// same error is returned whether the connector, its Secret or the token is wrong, so that
// a stranger learns nothing about which connectors exist.
func (e *Engine) authenticate(ctx context.Context, key types.NamespacedName, token string) error {
	denied := status.Errorf(codes.PermissionDenied, "the token is not valid for ExternalConnector %s", key)
	var sec corev1.Secret
	err := e.apiReader.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: v1alpha1.EngineSecretName(key.Name)}, &sec)
	switch {
	case apierrors.IsNotFound(err):
		return denied
	case err != nil:
		return status.Errorf(codes.Unavailable, "read the engine Secret of %s: %v", key, err)
	}
	want := sec.Data[v1alpha1.TokenKey]
	if len(want) == 0 || subtle.ConstantTimeCompare([]byte(token), want) != 1 {
		return denied
	}
	var ec v1alpha1.ExternalConnector
	if err := e.client.Get(ctx, key, &ec); err != nil {
		if apierrors.IsNotFound(err) {
			return denied
		}
		return status.Errorf(codes.Unavailable, "read ExternalConnector %s: %v", key, err)
	}
	// A Secret left over from a deleted connector of the same name must not serve the new one.
	if !isOwnedBy(&sec, &ec) {
		return denied
	}
	return nil
}

func isOwnedBy(sec *corev1.Secret, ec *v1alpha1.ExternalConnector) bool {
	for _, ref := range sec.OwnerReferences {
		if ref.UID == ec.UID {
			return true
		}
	}
	return false
}

// recvLoop reads until the connector closes its side or the stream breaks.
func (s *stream) recvLoop() error {
	for {
		msg, err := s.srv.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch m := msg.GetMessage().(type) {
		case *enginev1.ConnectorMessage_Activities:
			if err := s.e.receive(s, m.Activities); err != nil {
				return err
			}
		case *enginev1.ConnectorMessage_Heartbeat:
			s.e.heartbeat(s, m.Heartbeat)
		case *enginev1.ConnectorMessage_Bye:
			s.bye.Store(true)
			s.log.Info("connector said Bye", "reason", m.Bye.GetReason(), "lastSeq", m.Bye.GetLastSeq())
		case *enginev1.ConnectorMessage_Hello:
			return status.Error(codes.InvalidArgument, "Hello may only be the first message of a stream")
		default:
			return status.Error(codes.InvalidArgument, "unknown message")
		}
	}
}

// sendLoop is the stream's only sender: configs and orders when the desired state changes,
// acks when they advance.
func (s *stream) sendLoop(ctx context.Context) error {
	t := time.NewTicker(resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.disconnect:
			return s.send(&enginev1.EngineMessage{Message: &enginev1.EngineMessage_Order{Order: &enginev1.Order{
				Kind: enginev1.Order_DISCONNECT, Reason: "the engine is shutting down: dial again"}}})
		case <-s.ack:
			up, c := s.rs.takeAck()
			if up <= s.sentAck {
				s.rs.untake(c)
				continue
			}
			if err := s.send(&enginev1.EngineMessage{Message: &enginev1.EngineMessage_Ack{Ack: &enginev1.Ack{UpToSeq: up}}}); err != nil {
				s.rs.untake(c)
				return err
			}
			s.sentAck = up
			s.cs.add(func(cs *connectorState) { cs.counts = cs.counts.plus(c) })
		case <-s.kick:
			if err := s.reconcile(ctx); err != nil {
				return err
			}
		case <-t.C:
			if err := s.reconcile(ctx); err != nil {
				return err
			}
		}
	}
}

func (s *stream) send(m *enginev1.EngineMessage) error {
	if err := s.srv.Send(m); err != nil {
		return fmt.Errorf("send to %s: %w", s.pod, err)
	}
	return nil
}
