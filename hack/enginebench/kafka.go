package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/parley-dev/parley/api/v1alpha1"
)

const kafkaTopic = "parley-activities"

// kafkaSink is the kfake cluster (no Kafka broker runs on this machine: it needs a JVM;
// kfake speaks Kafka's protocol in this process) and the ActivitySink producing to it.
type kafkaSink struct {
	cluster *kfake.Cluster
	reg     *prometheus.Registry
}

func startKafkaSink(ctx context.Context, k8s client.Client, reg *prometheus.Registry) (*kafkaSink, error) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, kafkaTopic))
	if err != nil {
		return nil, fmt.Errorf("kfake: %w", err)
	}
	k := &kafkaSink{cluster: cluster, reg: reg}
	as := &v1alpha1.ActivitySink{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "kafka"},
		Spec: v1alpha1.ActivitySinkSpec{Kafka: &v1alpha1.KafkaSink{Brokers: cluster.ListenAddrs(), Topic: kafkaTopic}}}
	if err := k8s.Create(ctx, as); err != nil {
		cluster.Close()
		return nil, err
	}
	err = poll(60*time.Second, func() error {
		if _, ok := k.counts()["parley_engine_sink_queue_length"]; !ok {
			return errors.New("the engine has not built the sink")
		}
		return nil
	})
	if err != nil {
		cluster.Close()
		return nil, err
	}
	return k, nil
}

func (k *kafkaSink) close() { k.cluster.Close() }

// counts are the sink's metrics by name.
func (k *kafkaSink) counts() map[string]float64 {
	out := map[string]float64{}
	mfs, err := k.reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "sink" && l.GetValue() == "kafka" {
					out[mf.GetName()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return out
}

// disposed is what the engine has done with the activities so far: written (modes
// throughput and flood), or delivered by the sink (kafka).
func (b *bench) disposed() float64 {
	if b.kafka != nil {
		return b.kafka.counts()["parley_engine_sink_delivered_total"]
	}
	return gatherEngine(b.reg).written
}

// records counts the records of the topic, read back with a consumer of their own.
func (k *kafkaSink) records(ctx context.Context, want int) (int, error) {
	c, err := kgo.NewClient(kgo.SeedBrokers(k.cluster.ListenAddrs()...), kgo.ConsumeTopics(kafkaTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	n := 0
	for n < want {
		fs := c.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return n, err
		}
		n += fs.NumRecords()
	}
	return n, nil
}

// kafkaThroughput produces -activities activities in conversations of -pings PINGs and
// times them from the first conversation to the last the sink delivered.
func (b *bench) kafkaThroughput(ctx context.Context) error {
	per := b.cfg.pings + 4 // Connected, Greeted, the PINGs, QUIT, Ended
	conversations := (b.cfg.activities + per - 1) / per
	want := float64(conversations * per)
	cm0, err := b.connectorMetrics()
	if err != nil {
		return err
	}
	base := cm0["parley_connector_activities_produced_total"]
	k0 := b.kafka.counts()
	e0 := gatherEngine(b.reg)
	mem := startSampler(b)
	cpu0 := cpuTimes()
	stopProfile, err := startProfile(b.cfg.cpuProfile)
	if err != nil {
		return err
	}
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, b.cfg.clients)
	for range b.cfg.clients {
		wg.Go(func() {
			for next.Add(1) <= int64(conversations) {
				if err := conversePipelined(b.addr(), b.cfg.pings); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	clientsDone := make(chan struct{})
	go func() { wg.Wait(); close(clientsDone) }()
	var tClients, tDelivered time.Duration
	var delivered []point
	for tDelivered == 0 {
		select {
		case err := <-errs:
			return fmt.Errorf("conversation: %w", err)
		case <-clientsDone:
			tClients, clientsDone = time.Since(start), nil
		case <-time.After(250 * time.Millisecond):
		}
		now := time.Since(start)
		kc := b.kafka.counts()
		got := kc["parley_engine_sink_delivered_total"] - k0["parley_engine_sink_delivered_total"]
		delivered = append(delivered, point{now, got})
		// What the connector dropped (its buffer full: the engine took activities in
		// slower than they came) never arrives: the run ends when the rest has.
		lost := 0.0
		if tClients != 0 {
			if cm, err := b.connectorMetrics(); err == nil {
				lost = cm["parley_connector_activities_dropped_total"] - cm0["parley_connector_activities_dropped_total"]
			}
		}
		if got+lost >= want {
			tDelivered = now
		}
		if d := kc["parley_engine_sink_dropped_total"]; d > 0 {
			return fmt.Errorf("the sink dropped %v activities", d)
		}
		if now > 20*time.Minute {
			return fmt.Errorf("after %v: %v of %v activities delivered", now, got, want)
		}
	}
	stopProfile()
	cpu1 := cpuTimes()
	samples := mem.stop()
	cm1, err := b.connectorMetrics()
	if err != nil {
		return err
	}
	e1 := gatherEngine(b.reg)
	k1 := b.kafka.counts()
	produced := cm1["parley_connector_activities_produced_total"] - base

	fmt.Println()
	fmt.Printf("KAFKA  %d conversations x %d = %.0f activities, Activity objects for alerts only\n", conversations, per, want)
	row("clients done (connector side)", "%v, %.0f activities/s produced", tClients.Round(time.Millisecond), produced/tClients.Seconds())
	row("last activity delivered to Kafka", "%v after the first conversation began", tDelivered.Round(time.Millisecond))
	got := k1["parley_engine_sink_delivered_total"] - k0["parley_engine_sink_delivered_total"]
	row("end to end", "%.0f activities/s (%.0f delivered)", got/tDelivered.Seconds(), got)
	row("steady delivery rate (10%..90%)", "%.0f activities/s", steadyRate(delivered, got))
	row("Activity objects written", "%.0f", e1.written-e0.written)
	row("sink", "failed attempts %.0f, dropped %.0f", k1["parley_engine_sink_failed_total"], k1["parley_engine_sink_dropped_total"])
	row("dropped", "engine %v, connector %v", e1.dropped-e0.dropped, cm1["parley_connector_activities_dropped_total"])
	printCPU(cpu0, cpu1, tDelivered)
	printMemory(samples)
	fmt.Println()
	total := int(k1["parley_engine_sink_delivered_total"])
	n, err := b.kafka.records(ctx, total)
	var countErr error
	if err != nil || n != total {
		countErr = fmt.Errorf("read %d of %d (%v)", n, total, err)
	}
	check("records in the topic", countErr, fmt.Sprintf("%d, as many as the sink delivered", n))
	if countErr != nil {
		return countErr
	}
	return nil
}

// conversePipelined holds one conversation with its PINGs sent in one write, as a client
// that pipelines does: the connector's line framing makes each one input.
func conversePipelined(addr string, pings int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer func() {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReaderSize(c, 4096)
	if line, err := r.ReadString('\n'); err != nil || line != "+OK ready\r\n" {
		return fmt.Errorf("greeting %q (%v)", line, err)
	}
	if _, err := io.WriteString(c, strings.Repeat("PING\r\n", pings)+"QUIT\r\n"); err != nil {
		return err
	}
	for i := range pings {
		if line, err := r.ReadString('\n'); err != nil || line != "+PONG\r\n" {
			return fmt.Errorf("PING %d: %q (%v)", i+1, line, err)
		}
	}
	if line, err := r.ReadString('\n'); err != nil || line != "+OK bye\r\n" {
		return fmt.Errorf("QUIT: %q (%v)", line, err)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return fmt.Errorf("after the ending: %v, want EOF", err)
	}
	return nil
}
