package controllers

import (
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
)

// DefaultConnectorImage runs connector pods unless the operator is told otherwise.
const DefaultConnectorImage = "ghcr.io/parley-dev/parley:latest"

// Defaults are operator-wide settings the reconcilers apply.
type Defaults struct {
	// ConnectorImage runs `parley connector` in connector pods.
	ConnectorImage string
	// EngineAddress is what connector pods dial to reach the engine.
	EngineAddress string
	// Ender ends deleted connectors gracefully (the engine); nil ends them at once.
	Ender Ender
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
	if err := (&RetentionReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up Activity retention: %w", err)
	}
	return nil
}
