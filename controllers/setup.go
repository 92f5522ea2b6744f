package controllers

import (
	"fmt"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/parley-dev/parley/api/v1alpha1"

	ctrl "sigs.k8s.io/controller-runtime"
)

// Defaults are operator-wide settings the reconcilers apply.
type Defaults struct {
	// ConnectorImage runs `parley connector` in connector pods.
	ConnectorImage string
	// EngineAddress is what connector pods dial to reach the engine.
	EngineAddress string
	// Ender ends deleted connectors gracefully (the engine); nil ends them at once.
	Ender Ender
	// EngineCA returns the PEM of the CA connector pods trust the engine with, written into
	// each connector's engine Secret; nil leaves the Secrets without it. It must not wait:
	// while it returns nothing (the engine has not loaded its CA yet), reconciles write the
	// rest and come back for it shortly.
	EngineCA func() []byte
	// Retention applies to connectors whose spec.activities leaves maxCount or ttl unset.
	Retention Retention
	// SharedMemory is the store of shared variables handed to every connector through its
	// engine Secret, as it is now: its password and CA change when rotated. nil hands none
	// (each pod keeps its own, in process).
	SharedMemory *LiveSharedMemory
}

// SharedMemory is a Redis or Valkey store of shared variables (docs/rules.md §3, "Shared
// variables"). It reaches connector pods through their own Secret only, never the pod spec.
type SharedMemory struct {
	// URL is redis://host:port/db or rediss:// for TLS, without a password.
	URL string
	// Password authenticates to the store (the chart reads it from an existing Secret).
	Password []byte
	// CA is the PEM CA a rediss:// server's certificate must chain to.
	CA []byte
}

// LiveSharedMemory is the store's settings the operator hands to connectors, which change
// while it runs (a rotated password or CA). Reconciles read it concurrently; each change
// brings a reconcile of every ExternalConnector, so that every engine Secret gets it.
type LiveSharedMemory struct {
	current atomic.Pointer[SharedMemory]
	// changed holds one pending change at most: several changes before the controller
	// takes it need one reconcile of every connector, which reads the latest.
	changed chan event.TypedGenericEvent[struct{}]
}

// NewLiveSharedMemory starts with m.
func NewLiveSharedMemory(m SharedMemory) *LiveSharedMemory {
	l := &LiveSharedMemory{changed: make(chan event.TypedGenericEvent[struct{}], 1)}
	l.current.Store(&m)
	return l
}

// Get returns the settings now; a nil l has none.
func (l *LiveSharedMemory) Get() SharedMemory {
	if l == nil {
		return SharedMemory{}
	}
	return *l.current.Load()
}

// Set replaces the settings and, without waiting, asks for a reconcile of every
// ExternalConnector. m must not be changed afterwards.
func (l *LiveSharedMemory) Set(m SharedMemory) {
	l.current.Store(&m)
	l.ask()
}

// ask asks for a reconcile of every ExternalConnector, without waiting.
func (l *LiveSharedMemory) ask() {
	select {
	case l.changed <- event.TypedGenericEvent[struct{}]{}:
	default: // a reconcile of every connector is pending already, and reads the latest
	}
}

// rotationRetry is how long after a failed listing of the connectors a change of the
// store's settings is handed out again.
const rotationRetry = 5 * time.Second

// secretData is what the store puts into a connector's engine Secret, by key.
func (m SharedMemory) secretData() map[string][]byte {
	out := map[string][]byte{}
	if m.URL == "" {
		return out
	}
	out[v1alpha1.SharedMemoryURLKey] = []byte(m.URL)
	if len(m.Password) > 0 {
		out[v1alpha1.SharedMemoryPasswordKey] = m.Password
	}
	if len(m.CA) > 0 {
		out[v1alpha1.SharedMemoryCAKey] = m.CA
	}
	return out
}

// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete

// Setup registers every reconciler with the manager.
func Setup(mgr ctrl.Manager, d Defaults) error {
	if err := (&ConversationRulesReconciler{
		Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("parley-conversationrules"),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up the ConversationRules controller: %w", err)
	}
	if err := (&ExternalConnectorReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder("parley-externalconnector"), Defaults: d, Ender: d.Ender,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up the ExternalConnector controller: %w", err)
	}
	if err := (&ActivitySinkReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up the ActivitySink controller: %w", err)
	}
	if err := (&RetentionReconciler{Client: mgr.GetClient(), Defaults: d.Retention}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up Activity retention: %w", err)
	}
	return nil
}

// CacheOptions limit the manager's cache of Deployments, Jobs, Services and Pods to the ones the
// operator makes (all labelled as connector workloads), so that a big cluster's others cost
// no memory, and drop managedFields from every cached object: they are often larger than
// the rest of an Activity's metadata, and the reconcilers never read them. The manager must
// be built with these options: the reconcilers never read the objects they leave out.
func CacheOptions() cache.Options {
	connectorObjects := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{"app.kubernetes.io/component": "connector"})}
	return cache.Options{DefaultTransform: cache.TransformStripManagedFields(), ByObject: map[client.Object]cache.ByObject{
		&appsv1.Deployment{}: connectorObjects,
		&batchv1.Job{}:       connectorObjects,
		&corev1.Service{}:    connectorObjects,
		&corev1.Pod{}:        connectorObjects,
	}}
}
