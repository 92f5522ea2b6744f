package uplink

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	sent, acked, replayed, reconnects prometheus.Counter
	connected                         prometheus.Gauge
	buffered                          prometheus.GaugeFunc
}

func newMetrics(u *Uplink) metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "parley", Subsystem: "connector_engine", Name: name, Help: help})
	}
	return metrics{
		sent:       counter("activities_sent_total", "Activities sent to the engine, replays included."),
		acked:      counter("activities_acked_total", "Activities the engine acknowledged."),
		replayed:   counter("activities_replayed_total", "Activities sent again after a reconnection."),
		reconnects: counter("reconnects_total", "Engine streams that ended or could not start, each followed by a redial."),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "parley", Subsystem: "connector_engine", Name: "connected",
			Help: "1 while a stream to the engine is up."}),
		buffered: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "parley", Subsystem: "connector_engine", Name: "buffered_activities",
			Help: "Activities waiting for the engine's acknowledgement (the replay buffer)."},
			func() float64 { return float64(u.Stats().Buffered) }),
	}
}

func (m metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.sent, m.acked, m.replayed, m.reconnects, m.connected, m.buffered} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
