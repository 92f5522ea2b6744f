package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// rulesValid mirrors the Valid condition of every ConversationRules the controller has
// seen, so that invalid rules can be alerted on and graphed without reading status: 1 when
// the rules compile, 0 when they do not. A deleted object's series is removed. Only the
// leader reconciles, so a standby replica serves no series.
var rulesValid = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "parley_conversationrules_valid",
	Help: "1 if the ConversationRules compile (condition Valid True), 0 if they do not.",
}, []string{"namespace", "name"})

func init() {
	// controller-runtime's registry: served on the manager's metrics endpoint with the
	// engine's metrics and controller-runtime's own.
	metrics.Registry.MustRegister(rulesValid)
}

// Collectors are the controllers' own metrics, for tools and tests that list the metric
// names the operator serves (the chart's dashboard and alert rules are checked against
// them).
func Collectors() []prometheus.Collector { return []prometheus.Collector{rulesValid} }
