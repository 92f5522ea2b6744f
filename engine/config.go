package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"google.golang.org/protobuf/proto"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	enginev1 "github.com/parley-dev/parley/api/engine/v1"
	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

// desired is what a connector's streams should run, from the cache.
type desired struct {
	ec *v1alpha1.ExternalConnector
	// config is nil while the rules are not resolved, or the cache has not caught up with
	// the rules the connector's status names.
	config *enginev1.Config
}

// desiredFor reads the connector and its resolved rules from the cache. It sends only rules
// the reconcilers resolved as valid: the status names them with their hash, and the rules
// in the cache must hash the same (they may be newer, and then a change notification follows).
func (e *Engine) desiredFor(ctx context.Context, key types.NamespacedName) (*desired, error) {
	var ec v1alpha1.ExternalConnector
	if err := e.client.Get(ctx, key, &ec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	d := &desired{ec: &ec}
	ref := ec.Status.Rules
	if ref == nil || ref.Name == "" {
		return d, nil
	}
	var cr v1alpha1.ConversationRules
	if err := e.client.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: ref.Name}, &cr); err != nil {
		if apierrors.IsNotFound(err) {
			return d, nil
		}
		return nil, err
	}
	hash := rules.Hash(&cr.Spec)
	if hash != ref.Hash || cr.Generation != ref.Generation {
		return d, nil
	}
	spec, err := json.Marshal(&cr.Spec)
	if err != nil {
		return nil, fmt.Errorf("marshal rules %s: %w", ref.Name, err)
	}
	// The rules travel as written, with the connector's overrides beside them: the pod folds
	// them in with rules.Effective, as the controller did to validate them.
	o := ec.Spec.Overrides()
	cfg := &enginev1.Config{Spec: spec, RulesName: cr.Name, Generation: cr.Generation, Hash: hash, Paused: ec.Spec.Paused,
		Ip: o.IP, Port: o.Port}
	if t := ec.Spec.TLS; t != nil {
		cfg.TlsServerName, cfg.TlsInsecureSkipVerify = t.ServerName, t.InsecureSkipVerify
	}
	d.config = cfg
	return d, nil
}

// reconcile brings the stream's connector to the desired state: the current Config, Pause
// or Resume, and End once the connector is being deleted (or is gone).
func (s *stream) reconcile(ctx context.Context) error {
	d, err := s.e.desiredFor(ctx, s.connector)
	if err != nil {
		s.log.Error(err, "read the connector's desired state")
		return nil
	}
	if d == nil || d.ec.DeletionTimestamp != nil {
		if !s.sentEnd {
			reason := "the ExternalConnector was deleted"
			if err := s.order(enginev1.Order_END, reason); err != nil {
				return err
			}
			s.sentEnd = true
		}
		return nil
	}
	if d.config != nil && !sameConversation(d.config, s.sentConfig) {
		if err := s.send(&enginev1.EngineMessage{Message: &enginev1.EngineMessage_Config{Config: d.config}}); err != nil {
			return err
		}
		s.e.metrics.configsPushed.WithLabelValues(s.connector.Namespace, s.connector.Name).Inc()
		first := s.sentConfig == nil
		s.sentConfig = d.config
		paused := d.config.Paused
		s.sentPaused = &paused
		if !first || (s.helloHash != "" && s.helloHash != d.config.Hash) {
			s.e.announceRules(s.cs, d.ec, d.config, s.pod)
		}
		s.helloHash = d.config.Hash
		s.log.V(1).Info("sent config", "rules", d.config.RulesName, "generation", d.config.Generation, "hash", d.config.Hash)
	}
	if s.sentPaused != nil && *s.sentPaused != d.ec.Spec.Paused {
		kind, reason := enginev1.Order_RESUME, "spec.paused was cleared"
		if d.ec.Spec.Paused {
			kind, reason = enginev1.Order_PAUSE, "spec.paused is set"
		}
		if err := s.order(kind, reason); err != nil {
			return err
		}
		paused := d.ec.Spec.Paused
		s.sentPaused = &paused
		s.e.announcePaused(s.cs, d.ec, paused)
	}
	return nil
}

// announcePaused emits Paused or Resumed once per connector and change, however many pods
// receive the order.
func (e *Engine) announcePaused(cs *connectorState, ec *v1alpha1.ExternalConnector, paused bool) {
	cs.mu.Lock()
	if cs.announcedPaused != nil && *cs.announcedPaused == paused {
		cs.mu.Unlock()
		return
	}
	cs.announcedPaused = &paused
	cs.mu.Unlock()
	if paused {
		e.event(ec, corev1.EventTypeNormal, v1alpha1.ReasonPaused, "Pause",
			"spec.paused is set: the connector's pods refuse new connections (Rejected activities); live conversations go on")
		return
	}
	e.event(ec, corev1.EventTypeNormal, v1alpha1.ReasonResumed, "Resume",
		"spec.paused was cleared: the connector's pods accept new connections again")
}

// sameConversation says whether two Configs hold the same conversation: the same rules,
// overrides and TLS settings. Paused is left out: a pause travels as an order, not as a new
// Config.
func sameConversation(a, b *enginev1.Config) bool {
	if a == nil || b == nil {
		return a == b
	}
	a, b = proto.CloneOf(a), proto.CloneOf(b)
	a.Paused, b.Paused = false, false
	return proto.Equal(a, b)
}

func (s *stream) order(kind enginev1.Order_Kind, reason string) error {
	if err := s.send(&enginev1.EngineMessage{Message: &enginev1.EngineMessage_Order{Order: &enginev1.Order{Kind: kind, Reason: reason}}}); err != nil {
		return err
	}
	s.e.metrics.ordersSent.WithLabelValues(s.connector.Namespace, s.connector.Name, kind.String()).Inc()
	s.log.Info("sent order", "order", kind.String(), "reason", reason)
	return nil
}

// announceRules emits RulesUpdated once per connector and rules hash, however many pods
// receive them.
func (e *Engine) announceRules(cs *connectorState, ec *v1alpha1.ExternalConnector, cfg *enginev1.Config, pod string) {
	cs.mu.Lock()
	if cs.announcedHash == cfg.Hash {
		cs.mu.Unlock()
		return
	}
	cs.announcedHash = cfg.Hash
	cs.mu.Unlock()
	e.event(ec, corev1.EventTypeNormal, v1alpha1.ReasonRulesUpdated, "Push", fmt.Sprintf(
		"pushed ConversationRules %s generation %d (%s) to pod %s: new connections use them, live ones finish on their rules",
		cfg.RulesName, cfg.Generation, rules.ShortHash(cfg.Hash), pod))
}

// changed wakes the streams that an ExternalConnector or ConversationRules change may
// concern: the connector's own, or every stream of the rules' namespace.
func (e *Engine) changed(obj any) {
	switch o := obj.(type) {
	case *v1alpha1.ExternalConnector:
		if cs := e.lookup(types.NamespacedName{Namespace: o.Namespace, Name: o.Name}); cs != nil {
			cs.mu.Lock()
			for s := range cs.streams {
				s.signalKick()
			}
			cs.mu.Unlock()
		}
	case *v1alpha1.ConversationRules:
		e.mu.Lock()
		states := make([]*connectorState, 0, len(e.connectors))
		for k, cs := range e.connectors {
			if k.Namespace == o.Namespace {
				states = append(states, cs)
			}
		}
		e.mu.Unlock()
		for _, cs := range states {
			cs.mu.Lock()
			for s := range cs.streams {
				s.signalKick()
			}
			cs.mu.Unlock()
		}
	}
}
