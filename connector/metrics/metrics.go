// Package metrics holds the Prometheus metrics of a connector process: `parley connector`
// in a pod and `parley run` serve the same names (docs/engine.md lists them).
package metrics

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/activity"
)

// Counters are what a connector process has counted; read at every scrape.
type Counters struct {
	ActiveConnections   int64
	TotalConnections    uint64
	RejectedConnections uint64
	// EvictedConnections are the conversations UDP servers ended for new sources at
	// maxConcurrentConnections (capacityPolicy: EvictIdlest).
	EvictedConnections uint64
	// RateLimitedDatagrams and UnverifiedHellos are refusals summarised rather than
	// recorded one by one (docs/hardening.md).
	RateLimitedDatagrams uint64
	UnverifiedHellos     uint64
	// UDPSocketDropped are datagrams the kernel dropped from UDP servers' full receive
	// buffers, before the connector read them.
	UDPSocketDropped uint64
	// DTLSDropped counts what the DTLS listener dropped or gave up, by reason
	// (docs/hardening.md §1, "DTLS: before the cookie").
	DTLSDropped        DTLSDropped
	ActivitiesProduced uint64
	ActivitiesDropped  uint64
	// SharedMemoryErrors counts the checks and shared steps the shared-memory store failed.
	SharedMemoryErrors uint64
}

// DTLSDropped are the DTLS listener's drops, each a value of the reason label of
// parley_connector_dtls_dropped_total.
type DTLSDropped struct {
	// Evicted: handshakes whose cookie had not come back, given up for a newer hello at
	// maxConcurrentConnections. Backlog: sources not accepted yet, the oldest dropped for the
	// newest. Buffer: datagrams over their source's buffer. Socket: datagrams the kernel
	// dropped from the listener's full receive buffer.
	Evicted, Backlog, Buffer, Socket uint64
}

// Metrics are one process's connector metrics, in a registry of their own.
type Metrics struct {
	registry      *prometheus.Registry
	inputs, rules prometheus.Counter
}

// New registers the connector metrics, the Go runtime's and the process's; counters is
// called at every scrape, so it must be safe to call from any goroutine once serving starts.
func New(counters func() Counters) (*Metrics, error) {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		inputs: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_connector_inputs_total",
			Help: "Inputs received from peers."}),
		rules: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_connector_rules_fired_total",
			Help: "Custom rules that ran: fired by an input, or run as async rules."}),
	}
	counter := func(name, help string, f func(Counters) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(counters())) })
	}
	dtlsDropped := func(reason string, f func(DTLSDropped) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_connector_dtls_dropped_total",
			Help:        "DTLS hellos and datagrams the listener dropped (summarised, not recorded one by one), by reason: evicted, backlog, buffer, socket.",
			ConstLabels: prometheus.Labels{"reason": reason}}, func() float64 { return float64(f(counters().DTLSDropped)) })
	}
	for _, c := range []prometheus.Collector{
		m.inputs, m.rules,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_connector_connections_active", Help: "Live logical connections."},
			func() float64 { return float64(counters().ActiveConnections) }),
		counter("parley_connector_connections_total", "Logical connections started.",
			func(c Counters) uint64 { return c.TotalConnections }),
		counter("parley_connector_connections_rejected_total", "Peers refused (over a cap, paused).",
			func(c Counters) uint64 { return c.RejectedConnections }),
		counter("parley_connector_connections_evicted_total", "Logical connections a UDP server ended for a new source at maxConcurrentConnections (capacityPolicy: EvictIdlest).",
			func(c Counters) uint64 { return c.EvictedConnections }),
		counter("parley_connector_datagrams_rate_limited_total", "UDP datagrams over the per-source rate limit (summarised, not recorded one by one).",
			func(c Counters) uint64 { return c.RateLimitedDatagrams }),
		counter("parley_connector_udp_socket_dropped_total", "UDP datagrams the kernel dropped from a UDP server's full receive buffer before the connector read them.",
			func(c Counters) uint64 { return c.UDPSocketDropped }),
		counter("parley_connector_dtls_unverified_total", "DTLS handshakes given up before the peer returned the cookie (spoofed or lost hellos).",
			func(c Counters) uint64 { return c.UnverifiedHellos }),
		dtlsDropped("evicted", func(d DTLSDropped) uint64 { return d.Evicted }),
		dtlsDropped("backlog", func(d DTLSDropped) uint64 { return d.Backlog }),
		dtlsDropped("buffer", func(d DTLSDropped) uint64 { return d.Buffer }),
		dtlsDropped("socket", func(d DTLSDropped) uint64 { return d.Socket }),
		counter("parley_connector_activities_produced_total", "Activities recorded or dropped.",
			func(c Counters) uint64 { return c.ActivitiesProduced }),
		counter("parley_connector_activities_dropped_total", "Activities dropped before reaching their destination (buffers full).",
			func(c Counters) uint64 { return c.ActivitiesDropped }),
		counter("parley_connector_shared_memory_errors_total", "Checks and shared steps the shared-memory store (Redis, Valkey) failed.",
			func(c Counters) uint64 { return c.SharedMemoryErrors }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := m.registry.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Registerer is where the process's other parts (the engine client) register theirs.
func (m *Metrics) Registerer() prometheus.Registerer { return m.registry }

// Gatherer reads every metric of the process.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.registry }

// Sink counts inputs and fired rules on their way to next, so that the runtime needs no
// counters of its own.
func (m *Metrics) Sink(next activity.Sink) activity.Sink { return &countingSink{next: next, m: m} }

type countingSink struct {
	next activity.Sink
	m    *Metrics
}

// ReadsEvidence implements activity.EvidenceReader for the sink it counts for.
func (s *countingSink) ReadsEvidence() bool { return activity.ReadsEvidence(s.next) }

func (s *countingSink) Write(batch []*v1alpha1.ActivityRecord) error {
	inputs, fired := 0, 0
	for _, a := range batch {
		if a.Type == v1alpha1.ActivityInput {
			inputs++
		}
		if r := a.Rules; r != nil {
			fired += len(r.Executed) + len(r.Async)
		}
	}
	s.m.inputs.Add(float64(inputs))
	s.m.rules.Add(float64(fired))
	return s.next.Write(batch)
}

// Serve starts the /metrics endpoint on addr ("" or "0": none, and a nil address); a bad
// address fails here, not later. stop ends the endpoint and waits for its goroutine.
// /healthz answers 200 while the process serves HTTP; /readyz answers 200 when ready
// returns nil (or is nil) and 503 with ready's error otherwise: a pod's readiness probe.
func (m *Metrics) Serve(addr string, ready func() error) (bound net.Addr, stop func(), err error) {
	if addr == "" || addr == "0" {
		return nil, func() {}, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics endpoint: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(l) // ErrServerClosed: the listener is ours and closes only through stop
	}()
	return l.Addr(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			_ = srv.Close()
		}
		<-served
	}, nil
}
