package engine

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// engineMetrics are the engine's Prometheus metrics, served with the controllers' on the
// operator's metrics endpoint. Per-connector series carry namespace and connector labels and
// are deleted when the engine forgets the connector.
type engineMetrics struct {
	streams        prometheus.Gauge
	hellos         *prometheus.CounterVec
	received       *prometheus.CounterVec
	inputs         *prometheus.CounterVec
	rulesFired     *prometheus.CounterVec
	alerts         *prometheus.CounterVec
	written        *prometheus.CounterVec
	filtered       *prometheus.CounterVec
	dropped        *prometheus.CounterVec
	connections    *prometheus.GaugeVec
	connectedPods  *prometheus.GaugeVec
	queueLength    prometheus.Gauge
	queueBytes     prometheus.Gauge
	writeDuration  prometheus.Histogram
	configsPushed  *prometheus.CounterVec
	ordersSent     *prometheus.CounterVec
	statusPatches  *prometheus.CounterVec
	sinkAckGivenUp *prometheus.CounterVec
	perConnectorVs []interface{ DeletePartialMatch(prometheus.Labels) int }
}

var connectorLabels = []string{"namespace", "connector"}

// Collectors are a fresh, unregistered set of the engine's metrics, for tools and tests that
// list the metric names the operator serves (the chart's dashboard and alert rules are
// checked against them).
// The ActivitySinks' counters are collected from the engine's deliveries; an engine-less
// sinkCollector describes them and is never collected.
func Collectors() []prometheus.Collector {
	return append(buildEngineMetrics().collectors(), sinkCollector{})
}

func newEngineMetrics(reg prometheus.Registerer) (*engineMetrics, error) {
	m := buildEngineMetrics()
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register engine metrics: %w", err)
		}
	}
	return m, nil
}

func (m *engineMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.streams, m.hellos, m.received, m.inputs, m.rulesFired, m.alerts, m.written,
		m.filtered, m.dropped, m.connections, m.connectedPods, m.queueLength, m.queueBytes, m.writeDuration, m.configsPushed,
		m.ordersSent, m.statusPatches, m.sinkAckGivenUp}
}

func buildEngineMetrics() *engineMetrics {
	m := &engineMetrics{
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_engine_streams", Help: "Connector streams open on this engine."}),
		hellos: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_engine_hellos_total", Help: "Connector Hellos by result (accepted, denied, invalid)."}, []string{"result"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_engine_activities_received_total", Help: "Activities received from connectors (replays not counted twice)."}, connectorLabels),
		inputs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_engine_inputs_total", Help: "Inputs received from third parties, as reported by connectors."}, connectorLabels),
		rulesFired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_engine_rules_fired_total", Help: "Custom and async rules executed, as reported by connectors."}, connectorLabels),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_engine_alerts_total", Help: "Activities flagged as alerts."}, connectorLabels),
		written: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_engine_activities_written_total", Help: "Activity objects created."}, connectorLabels),
		filtered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_engine_activities_filtered_total", Help: "Activities not written because of spec.activities.record."}, connectorLabels),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_engine_activities_dropped_total", Help: "Activities that could not be written, by reason (queue_full, write_failed, connector_buffer)."},
			append(connectorLabels, "reason")),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "parley_engine_connections_active", Help: "Live logical connections of a connector, from its pods' heartbeats."}, connectorLabels),
		connectedPods: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "parley_engine_connected_pods", Help: "Pods of a connector with a stream open to this engine (0 once the last one is gone: EngineConnected False)."}, connectorLabels),
		queueLength: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_engine_write_queue_length", Help: "Activities waiting to be written."}),
		queueBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_engine_write_queue_bytes", Help: "Estimated bytes of the activities waiting to be written or being written (bounded by --activity-queue-budget)."}),
		writeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parley_engine_write_duration_seconds", Help: "Latency of one Activity create, rate-limit wait excluded.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		configsPushed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_engine_configs_pushed_total", Help: "Configs sent to connector streams."}, connectorLabels),
		ordersSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_engine_orders_total", Help: "Orders sent to connector streams, by kind."}, append(connectorLabels, "order")),
		statusPatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_engine_status_patches_total", Help: "ExternalConnector status patches by result."}, []string{"result"}),
		sinkAckGivenUp: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_engine_sink_ack_given_up_total", Help: "Sink deliveries the acknowledgement to the connector no longer waited for: the sink lagged more than the window behind the connector."}, connectorLabels),
	}
	m.perConnectorVs = []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.received, m.inputs, m.rulesFired, m.alerts, m.written, m.filtered, m.dropped, m.connections, m.connectedPods,
		m.configsPushed, m.ordersSent, m.sinkAckGivenUp}
	return m
}

// forget deletes a connector's series.
func (m *engineMetrics) forget(namespace, connector string) {
	for _, v := range m.perConnectorVs {
		v.DeletePartialMatch(prometheus.Labels{"namespace": namespace, "connector": connector})
	}
}
