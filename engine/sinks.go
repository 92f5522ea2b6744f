package engine

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/evidence"
	"github.com/parley-dev/parley/internal/statusapply"
	"github.com/parley-dev/parley/internal/text"
	"github.com/parley-dev/parley/sink"
)

// +kubebuilder:rbac:groups=parley.io,resources=activitysinks,verbs=get;list;watch
// +kubebuilder:rbac:groups=parley.io,resources=activitysinks/status,verbs=get;patch

// sinkDropWarningEvery rate-limits the ActivitiesDropped Warning of an ActivitySink.
const sinkDropWarningEvery = 5 * time.Minute

// delivery is one ActivitySink as the engine built it from its spec and Secrets: immutable;
// a change of either builds a new one in its place.
type delivery struct {
	key types.NamespacedName
	// Route is the sink with its filter, connector selector and whether it takes the
	// signed checkpoints (sink.Start).
	*sink.Route
}

// sinkRecord is what the engine keeps of one ActivitySink across rebuilds: the counters its
// status shows and what it last applied.
type sinkRecord struct {
	key types.NamespacedName
	// version is the generation and the Secrets' resourceVersions the current delivery
	// was built from; "" until one was.
	version string
	current *delivery
	// buildError says why there is no delivery (the spec or a Secret); the controller's
	// Ready condition says it too.
	buildError string

	mu sync.Mutex
	// base is the status as first read, so that counters survive operator restarts;
	// closed are the counters of the deliveries replaced by rebuilds.
	base, closed sinkCounts
	lastError    string
	applied      *sinkCounts
	// warnedDropped is the dropped count at the last Warning, sent at lastWarning.
	warnedDropped int64
	lastWarning   time.Time
}

// sinkCounts are the status fields the engine owns.
type sinkCounts struct {
	delivered, failed, dropped int64
	lastError                  string
}

func (c sinkCounts) plus(st sink.Stats) sinkCounts {
	c.delivered += int64(st.Delivered)
	c.failed += int64(st.Failed)
	c.dropped += int64(st.Dropped)
	if st.LastError != "" {
		c.lastError = st.LastError
	}
	return c
}

// sinks are the engine's deliveries by namespace, for the receive path, and the records of
// every ActivitySink it knows.
type sinks struct {
	// building serialises the builds of deliveries: the sink controller's, and those the
	// engine makes before it serves (buildSinks).
	building sync.Mutex
	mu       sync.RWMutex
	// byNamespace is replaced, never changed in place: receive reads it under the read lock.
	byNamespace map[string][]*delivery
	records     map[types.NamespacedName]*sinkRecord
	stopped     bool
}

// offer hands the activities of one batch (nil: a replay, offered when it first came) to the sinks of the connector's namespace whose
// selector picks it and whose filter keeps them. It never blocks: a full queue drops and
// counts. Batch pb of rs waits for each item until its sink settles it (sinkack.go). The
// read lock held while offering makes a rebuild wait for the offers in flight before it
// takes the old sink's leftovers.
func (e *Engine) offer(ec *v1alpha1.ExternalConnector, names []string, acts []*incoming, rs *runState, pb *pendingBatch) {
	e.sinks.mu.RLock()
	defer e.sinks.mu.RUnlock()
	var settle func()
	for _, d := range e.sinks.byNamespace[ec.Namespace] {
		if !d.Selector.Matches(labels.Set(ec.Labels)) {
			continue
		}
		if settle == nil {
			settle = func() { rs.sinkSettled(pb) }
		}
		items := make([]sink.Item, 0, len(acts))
		for i, in := range acts {
			if in != nil && sink.Keeps(&d.Filter, in.rec) {
				items = append(items, sink.Item{Key: names[i], Record: in.rec, Raw: in.raw, Partial: in.partial, Settle: settle})
			}
		}
		if len(items) == 0 {
			continue
		}
		rs.holdSinks(pb, len(items))
		d.Sink.Offer(items...)
	}
}

// offerCheckpoints hands the checkpoints of ec's chain to the sinks that take its
// activities and checkpoints, after those activities, so that parley verify can check the
// sink's output. They hold up no acknowledgement: a connector's replay to the next engine
// is signed again there.
func (e *Engine) offerCheckpoints(ec *v1alpha1.ExternalConnector, cps []*evidence.Checkpoint) {
	if len(cps) == 0 {
		return
	}
	e.sinks.mu.RLock()
	defer e.sinks.mu.RUnlock()
	for _, d := range e.sinks.byNamespace[ec.Namespace] {
		if !d.Checkpoints || !d.Selector.Matches(labels.Set(ec.Labels)) {
			continue
		}
		items := make([]sink.Item, len(cps))
		for i, cp := range cps {
			items[i] = sink.CheckpointItem(ec.Name, cp)
		}
		d.Sink.Offer(items...)
	}
}

// sinkReconciler builds, rebuilds and stops the engine's delivery to each ActivitySink. It
// runs where the engine does, on the elected leader, which receives every activity.
type sinkReconciler struct{ e *Engine }

// Reconcile makes the delivery of one ActivitySink match its spec and Secrets.
func (r sinkReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	e := r.e
	e.sinks.building.Lock()
	defer e.sinks.building.Unlock()
	var as v1alpha1.ActivitySink
	if err := e.client.Get(ctx, req.NamespacedName, &as); err != nil {
		if apierrors.IsNotFound(err) {
			e.stopSink(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if as.DeletionTimestamp != nil {
		e.stopSink(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	rec := e.sinkRecord(&as)
	secrets, version, err := e.sinkSecrets(ctx, &as)
	if err != nil {
		return ctrl.Result{}, err
	}
	if version == rec.version {
		return ctrl.Result{}, nil
	}
	var d *delivery
	buildErr := ""
	if errs := sink.Validate(&as.Spec, field.NewPath("spec")); len(errs) > 0 {
		buildErr = "invalid: " + errs.ToAggregate().Error()
	} else if d, err = e.newDelivery(&as, sink.SecretsIn(secrets)); err != nil {
		buildErr = err.Error()
	}
	if buildErr != "" {
		e.log.Info("ActivitySink cannot deliver", "sink", req.String(), "reason", buildErr)
	}
	e.replaceSink(rec, version, d, buildErr)
	return ctrl.Result{}, nil
}

// buildSinks builds the delivery of every ActivitySink there is, before the engine serves
// its first stream. A connector that redials at once (a failover, an operator restart)
// replays what the last engine's sinks held, unacknowledged; offered to no sink, because
// the sink controller had not built it yet, those activities would be acknowledged and never
// delivered. The controller builds the same sinks too; what it finds built, it leaves.
func (e *Engine) buildSinks(ctx context.Context) {
	var list v1alpha1.ActivitySinkList
	if err := e.client.List(ctx, &list); err != nil {
		e.log.Error(err, "list ActivitySinks before serving: the sink controller builds them as it gets to them")
		return
	}
	r := sinkReconciler{e}
	for i := range list.Items {
		req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])}
		if _, err := r.Reconcile(ctx, req); err != nil {
			e.log.Error(err, "build an ActivitySink before serving; the sink controller tries again", "sink", req.String())
		}
	}
}

// sinkRecord returns the record of as, making it with the counters of its status.
func (e *Engine) sinkRecord(as *v1alpha1.ActivitySink) *sinkRecord {
	key := client.ObjectKeyFromObject(as)
	e.sinks.mu.Lock()
	defer e.sinks.mu.Unlock()
	rec := e.sinks.records[key]
	if rec == nil {
		st := as.Status
		rec = &sinkRecord{key: key, base: sinkCounts{delivered: st.Delivered, failed: st.Failed, dropped: st.Dropped}, lastError: st.LastError}
		rec.warnedDropped = st.Dropped
		e.sinks.records[key] = rec
	}
	return rec
}

// sinkSecrets reads the Secrets as names (uncached: the operator caches only their
// metadata), and the version of what a delivery built now is built from: the generation
// and each Secret's resourceVersion, so that a changed Secret rebuilds the sink.
func (e *Engine) sinkSecrets(ctx context.Context, as *v1alpha1.ActivitySink) (map[string]map[string][]byte, string, error) {
	secrets := map[string]map[string][]byte{}
	version := []string{fmt.Sprint(as.Generation)}
	for _, need := range sink.SecretsNeeded(&as.Spec, field.NewPath("spec")) {
		if _, seen := secrets[need.Name]; seen {
			continue
		}
		var sec corev1.Secret
		err := e.apiReader.Get(ctx, types.NamespacedName{Namespace: as.Namespace, Name: need.Name}, &sec)
		switch {
		case apierrors.IsNotFound(err):
			version = append(version, need.Name+"=absent")
			continue
		case err != nil:
			return nil, "", fmt.Errorf("read Secret %s/%s of ActivitySink %s: %w", as.Namespace, need.Name, as.Name, err)
		}
		secrets[need.Name] = sec.Data
		version = append(version, need.Name+"="+sec.ResourceVersion)
	}
	return secrets, strings.Join(version, ","), nil
}

// newDelivery builds and starts the sink of as.
func (e *Engine) newDelivery(as *v1alpha1.ActivitySink, secret sink.SecretValue) (*delivery, error) {
	r, err := sink.Start(&as.Spec, secret, e.opts.SinkOptions)
	if err != nil {
		return nil, err
	}
	return &delivery{key: client.ObjectKeyFromObject(as), Route: r}, nil
}

// replaceSink puts d (nil: none) in the place of rec's current delivery. The old one is
// closed and what it had not delivered goes to the new one, so that a changed spec or
// Secret loses no activity.
func (e *Engine) replaceSink(rec *sinkRecord, version string, d *delivery, buildErr string) {
	e.sinks.mu.Lock()
	if e.sinks.stopped {
		e.sinks.mu.Unlock()
		if d != nil {
			_ = d.Sink.Close()
		}
		return
	}
	old := rec.current
	rec.current, rec.version, rec.buildError = d, version, buildErr
	e.sinks.byNamespace[rec.key.Namespace] = e.sinks.deliveriesIn(rec.key.Namespace)
	// rec.mu until the old counters are in closed: a status flush meanwhile would see
	// them in neither and write counters that go down.
	rec.mu.Lock()
	defer rec.mu.Unlock()
	e.sinks.mu.Unlock()
	if old == nil {
		return
	}
	_ = old.Sink.Close()
	left := old.Sink.Leftover()
	rec.closed = rec.closed.plus(old.Sink.Stats())
	if d != nil {
		d.Sink.Offer(left...)
	} else {
		rec.closed.dropped += int64(len(left))
		sink.SettleAll(left) // no sink will deliver them: their batches are acknowledged all the same
	}
}

// deliveriesIn lists the deliveries of namespace, sorted by name; the caller holds mu.
func (s *sinks) deliveriesIn(namespace string) []*delivery {
	var out []*delivery
	for key, rec := range s.records {
		if key.Namespace == namespace && rec.current != nil {
			out = append(out, rec.current)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key.Name < out[j].key.Name })
	return out
}

// stopSink stops the delivery of a deleted ActivitySink: what it had queued is not
// delivered (and no longer holds up an acknowledgement), and its status is no longer
// written.
func (e *Engine) stopSink(key types.NamespacedName) {
	e.sinks.mu.Lock()
	rec := e.sinks.records[key]
	delete(e.sinks.records, key)
	e.sinks.byNamespace[key.Namespace] = e.sinks.deliveriesIn(key.Namespace)
	e.sinks.mu.Unlock()
	if rec != nil && rec.current != nil {
		_ = rec.current.Sink.Close()
		sink.SettleAll(rec.current.Sink.Leftover()) // a deleted sink: acknowledged all the same
	}
}

// stopSinks closes every delivery: the engine is stopping. What they still hold is not
// settled: its batches stay unacknowledged, and the connectors replay them to the next
// engine. Their counters stay for the last status write.
func (e *Engine) stopSinks() {
	e.sinks.mu.Lock()
	e.sinks.stopped = true
	var open []*delivery
	for _, rec := range e.sinks.records {
		if rec.current != nil {
			open = append(open, rec.current)
		}
	}
	e.sinks.byNamespace = map[string][]*delivery{}
	e.sinks.mu.Unlock()
	for _, d := range open {
		_ = d.Sink.Close()
	}
}

// totals are rec's status counters now; the caller holds rec.mu.
func (rec *sinkRecord) totals(current *delivery, buildErr string) sinkCounts {
	c := rec.base
	c.delivered += rec.closed.delivered
	c.failed += rec.closed.failed
	c.dropped += rec.closed.dropped
	c.lastError = rec.lastError
	if rec.closed.lastError != "" {
		c.lastError = rec.closed.lastError
	}
	if current != nil {
		c = c.plus(current.Sink.Stats())
	}
	if buildErr != "" {
		c.lastError = buildErr
	}
	return c
}

// flushSinks applies the counters of every ActivitySink whose counters changed, and
// announces new drops with one Warning per sink every sinkDropWarningEvery.
func (e *Engine) flushSinks(ctx context.Context) {
	type snapshot struct {
		rec      *sinkRecord
		current  *delivery
		buildErr string
	}
	e.sinks.mu.RLock()
	all := make([]snapshot, 0, len(e.sinks.records))
	for _, rec := range e.sinks.records {
		// Only once the engine has tried to build it: a status from the engine says it
		// delivers (or why not).
		if rec.version != "" {
			all = append(all, snapshot{rec, rec.current, rec.buildError})
		}
	}
	e.sinks.mu.RUnlock()
	for _, s := range all {
		rec := s.rec
		rec.mu.Lock()
		c := rec.totals(s.current, s.buildErr)
		changed := rec.applied == nil || *rec.applied != c
		warn := c.dropped - rec.warnedDropped
		if warn > 0 && time.Since(rec.lastWarning) >= sinkDropWarningEvery {
			rec.warnedDropped, rec.lastWarning = c.dropped, time.Now()
		} else {
			warn = 0
		}
		rec.mu.Unlock()
		if warn > 0 {
			as := &v1alpha1.ActivitySink{ObjectMeta: metav1.ObjectMeta{Namespace: rec.key.Namespace, Name: rec.key.Name}}
			e.recorder.Eventf(as, nil, corev1.EventTypeWarning, v1alpha1.ReasonSinkDropping, "Deliver", "%s", text.EventNote(fmt.Sprintf(
				"%d activities dropped: the sink's queue was full, its destination slower than the activities or down (last error: %s). "+
					"They are counted in status.dropped; the other sinks and the Activity objects are not affected", warn, orNone(c.lastError))))
		}
		if !changed {
			continue
		}
		if err := e.applySinkStatus(ctx, rec.key, c); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			e.metrics.statusPatches.WithLabelValues("error").Inc()
			e.log.Error(err, "update ActivitySink status", "sink", rec.key.String())
			continue
		}
		e.metrics.statusPatches.WithLabelValues("ok").Inc()
		rec.mu.Lock()
		rec.applied = &c
		rec.mu.Unlock()
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// applySinkStatus applies the fields of an ActivitySink's status the engine owns, under the
// same field manager as the connectors' (statusOwner): delivered, failed, dropped and
// lastError. The controller owns type, conditions and observedGeneration.
func (e *Engine) applySinkStatus(ctx context.Context, key types.NamespacedName, c sinkCounts) error {
	fields := statusapply.Fields{"delivered": c.delivered, "failed": c.failed, "dropped": c.dropped}
	if c.lastError != "" {
		fields["lastError"] = text.Truncate(c.lastError, 1024)
	}
	var got v1alpha1.ActivitySink
	return statusapply.ApplyKind(ctx, e.client, "ActivitySink", key.Namespace, key.Name, &got, statusOwner, fields)
}

// sinksNaming maps a Secret to the ActivitySinks of its namespace that read it.
func (e *Engine) sinksNaming(ctx context.Context, obj client.Object) []reconcile.Request {
	var list v1alpha1.ActivitySinkList
	if err := e.client.List(ctx, &list, client.InNamespace(obj.GetNamespace())); err != nil {
		e.log.Error(err, "list ActivitySinks naming a Secret", "secret", client.ObjectKeyFromObject(obj).String())
		return nil
	}
	var out []reconcile.Request
	for _, key := range sink.ReadersOf(list.Items, obj.GetName()) {
		out = append(out, reconcile.Request{NamespacedName: key})
	}
	return out
}

// setupSinks registers the sink reconciler. Like the engine that feeds the sinks, it runs on
// the elected leader only (a standby receives no activities, so it builds no sinks), and
// it is not the only one of its name in a test process that runs several engines.
func (e *Engine) setupSinks(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.ActivitySink{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(e.sinksNaming), builder.OnlyMetadata).
		Named("activitysink-delivery").
		// One at a time whatever the operator's --concurrent: a sink's rebuild hands what the
		// old delivery had queued to the new one, in order.
		WithOptions(controller.Options{SkipNameValidation: ptr.To(true), MaxConcurrentReconciles: 1}).
		Complete(sinkReconciler{e})
}

// sinkCollector exports each sink's counters, as this engine counted them, at scrape time.
type sinkCollector struct{ e *Engine }

var (
	sinkLabels       = []string{"namespace", "sink"}
	sinkDeliveredD   = prometheus.NewDesc("parley_engine_sink_delivered_total", "Activities an ActivitySink's destination accepted.", sinkLabels, nil)
	sinkFailedD      = prometheus.NewDesc("parley_engine_sink_failed_total", "Failed delivery attempts of an ActivitySink (each retried).", sinkLabels, nil)
	sinkDroppedD     = prometheus.NewDesc("parley_engine_sink_dropped_total", "Activities an ActivitySink dropped: its queue was full.", sinkLabels, nil)
	sinkQueueLengthD = prometheus.NewDesc("parley_engine_sink_queue_length", "Activities waiting in an ActivitySink's queue.", sinkLabels, nil)
)

// Describe implements prometheus.Collector.
func (c sinkCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sinkDeliveredD, sinkFailedD, sinkDroppedD, sinkQueueLengthD} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c sinkCollector) Collect(ch chan<- prometheus.Metric) {
	if c.e == nil { // Collectors' describing one: no deliveries to read
		return
	}
	type one struct {
		rec     *sinkRecord
		current *delivery
	}
	s := &c.e.sinks
	s.mu.RLock()
	all := make([]one, 0, len(s.records))
	for _, rec := range s.records {
		all = append(all, one{rec, rec.current})
	}
	s.mu.RUnlock()
	for _, o := range all {
		o.rec.mu.Lock()
		cnt := o.rec.closed
		o.rec.mu.Unlock()
		queued := 0
		if o.current != nil {
			st := o.current.Sink.Stats()
			cnt, queued = cnt.plus(st), st.Queued
		}
		lv := []string{o.rec.key.Namespace, o.rec.key.Name}
		ch <- prometheus.MustNewConstMetric(sinkDeliveredD, prometheus.CounterValue, float64(cnt.delivered), lv...)
		ch <- prometheus.MustNewConstMetric(sinkFailedD, prometheus.CounterValue, float64(cnt.failed), lv...)
		ch <- prometheus.MustNewConstMetric(sinkDroppedD, prometheus.CounterValue, float64(cnt.dropped), lv...)
		ch <- prometheus.MustNewConstMetric(sinkQueueLengthD, prometheus.GaugeValue, float64(queued), lv...)
	}
}
