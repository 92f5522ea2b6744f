package chart_test

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/metrics"
	"github.com/parley-dev/parley/connector/uplink"
	"github.com/parley-dev/parley/controllers"
	"github.com/parley-dev/parley/engine"
	"github.com/parley-dev/parley/internal/operator"
)

// nameRecorder is a prometheus.Registerer that keeps the names of what is registered with
// it: vectors without series are described, not gathered.
type nameRecorder struct{ names map[string]bool }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *nameRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			return fmt.Errorf("no name in %s", d)
		}
		r.names[m[1]] = true
	}
	return nil
}

func (r *nameRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *nameRecorder) Unregister(prometheus.Collector) bool { return false }

// servedMetrics are the names of every Parley metric the code registers: the engine's and
// the controllers' (the operator's endpoint), the connector process' and its uplink's
// (connector pods). Histograms also serve _bucket, _sum and _count.
func servedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	r := &nameRecorder{names: map[string]bool{}}
	r.MustRegister(engine.Collectors()...)
	r.MustRegister(controllers.Collectors()...)
	r.MustRegister(operator.Collectors()...)
	m, err := metrics.New(func() metrics.Counters { return metrics.Counters{} })
	if err != nil {
		t.Fatal(err)
	}
	families, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		r.names[f.GetName()] = true
	}
	noTLS := func() (*tls.Config, error) { return nil, fmt.Errorf("not dialed") }
	if _, err := uplink.New(uplink.Options{Address: "engine:9443", TLS: noTLS, Token: func() (string, error) { return "", nil }, Registerer: r}); err != nil {
		t.Fatal(err)
	}
	for name := range r.names {
		if strings.HasSuffix(name, "_seconds") {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				r.names[name+s] = true
			}
		}
	}
	for _, want := range []string{"parley_engine_connected_pods", "parley_conversationrules_valid", "parley_connector_connections_total",
		"parley_connector_engine_activities_acked_total"} {
		if !r.names[want] {
			t.Fatalf("%s is not among the registered metrics %v: the collection is broken", want, r.names)
		}
	}
	return r.names
}

// promqlKeywords are the words of PromQL that are not metric names.
var promqlKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}

var (
	promqlString     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promqlIdentifier = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// promqlMetrics returns the metric names an expression selects, after checking that its
// brackets balance. It is a check of what the chart writes, not a PromQL parser: label
// matchers ({...}), ranges ([...]), grouping lists (by (...)), strings, numbers and
// function names are not metric names.
func promqlMetrics(expr string) ([]string, error) {
	var stack []rune
	pairs := map[rune]rune{')': '(', '}': '{', ']': '['}
	for _, r := range promqlString.ReplaceAllString(expr, `""`) {
		switch r {
		case '(', '{', '[':
			stack = append(stack, r)
		case ')', '}', ']':
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return nil, fmt.Errorf("unbalanced %q in %s", r, expr)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) != 0 {
		return nil, fmt.Errorf("unclosed %q in %s", stack, expr)
	}
	s := promqlString.ReplaceAllString(expr, `""`)
	s = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`).ReplaceAllString(s, " ")
	s = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`).ReplaceAllString(s, " ")
	var names []string
	for _, loc := range promqlIdentifier.FindAllStringIndex(s, -1) {
		word := s[loc[0]:loc[1]]
		if loc[0] > 0 && (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.' || s[loc[0]-1] == '$') {
			continue // a number's exponent or unit, a variable
		}
		if promqlKeywords[strings.ToLower(word)] || strings.HasPrefix(strings.TrimLeft(s[loc[1]:], " "), "(") {
			continue // a keyword, a function or an aggregation
		}
		names = append(names, word)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no metric in %s", expr)
	}
	return names, nil
}

func TestPromQLMetrics(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (namespace, connector) (rate(parley_a_total{namespace=~"$namespace"}[$__rate_interval])) * 60 > 30`: {"parley_a_total"},
		`histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))`:                                                {"x_bucket"},
		`max by (namespace, name) (v) == 0 or on (namespace) b`:                                                     {"v", "b"},
	} {
		if got, err := promqlMetrics(expr); err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: %v %v, want %v", expr, got, err, want)
		}
	}
	for _, bad := range []string{`sum(rate(x[5m])`, `x{a="b"`, `x)`, `1 + 2`} {
		if got, err := promqlMetrics(bad); err == nil {
			t.Errorf("%s: %v, want an error", bad, got)
		}
	}
}

// checkExprs fails for an expression that does not balance or selects a metric the code
// does not register.
func checkExprs(t *testing.T, served map[string]bool, where string, exprs []string) map[string]bool {
	t.Helper()
	used := map[string]bool{}
	for _, e := range exprs {
		names, err := promqlMetrics(e)
		if err != nil {
			t.Errorf("%s: %v", where, err)
		}
		for _, n := range names {
			used[n] = true
			if !served[n] {
				t.Errorf("%s: %s selects %s, which no code registers", where, e, n)
			}
		}
	}
	return used
}

type dashboard struct {
	Title  string `json:"title"`
	UID    string `json:"uid"`
	Panels []struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

func TestGrafanaDashboard(t *testing.T) {
	if cm := render(t).kinds("ConfigMap"); len(cm) != 0 {
		t.Errorf("dashboard rendered by default: %v", cm)
	}
	m := render(t, valueSets["operations"]...)
	cm := get[*corev1.ConfigMap](t, m, "ConfigMap", namespace, "parley-dashboard")
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("labels %v: want the sidecar's grafana_dashboard=1", cm.Labels)
	}
	raw, err := os.ReadFile(filepath.Join(chartDir, "files", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["parley.json"] != strings.TrimRight(string(raw), "\n") || len(cm.Data) != 1 {
		t.Errorf("the ConfigMap does not hold files/grafana-dashboard.json as parley.json: keys %v", slices.Collect(maps.Keys(cm.Data)))
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(cm.Data["parley.json"]))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard %q uid %q with %d panels", d.Title, d.UID, len(d.Panels))
	}
	served := servedMetrics(t)
	ids := map[int]bool{}
	var exprs []string
	for _, p := range d.Panels {
		if ids[p.ID] || len(p.Targets) == 0 {
			t.Errorf("panel %d %q: duplicate id or no query", p.ID, p.Title)
		}
		ids[p.ID] = true
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Definition != "" {
			exprs = append(exprs, strings.TrimSuffix(strings.TrimPrefix(v.Definition, "label_values("), ", namespace)"))
		}
	}
	used := checkExprs(t, served, "dashboard", exprs)
	// What the dashboard is for: each of these has a panel.
	for _, want := range []string{
		"parley_engine_activities_received_total", "parley_engine_activities_written_total", "parley_engine_activities_dropped_total",
		"parley_engine_inputs_total", "parley_engine_rules_fired_total", "parley_engine_alerts_total", "parley_engine_connected_pods",
		"parley_engine_write_queue_length", "parley_engine_write_queue_bytes", "parley_engine_status_patches_total",
		"parley_connector_connections_active", "parley_connector_connections_total", "parley_connector_connections_rejected_total",
		"parley_connector_engine_activities_sent_total", "parley_connector_engine_activities_acked_total",
		"parley_connector_engine_buffered_activities", "parley_conversationrules_valid",
	} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}

	// Another sidecar label and namespace.
	m = render(t, "--set", "grafana.dashboard.enabled=true", "--set", "grafana.dashboard.namespace=monitoring",
		"--set", "grafana.dashboard.labels.grafana_dashboard=null", "--set", "grafana.dashboard.labels.dashboards=parley",
		"--set", "grafana.dashboard.annotations.grafana_folder=Security")
	cm = get[*corev1.ConfigMap](t, m, "ConfigMap", "monitoring", "parley-dashboard")
	if _, ok := cm.Labels["grafana_dashboard"]; ok || cm.Labels["dashboards"] != "parley" || cm.Labels["app.kubernetes.io/name"] != "parley" {
		t.Errorf("labels %v: want dashboards=parley with the chart's, without grafana_dashboard", cm.Labels)
	}
	if cm.Annotations["grafana_folder"] != "Security" {
		t.Errorf("annotations %v", cm.Annotations)
	}
}

type prometheusRule struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// troubleshootingAnchors are the anchors GitHub gives the headings of docs/troubleshooting.md.
func troubleshootingAnchors(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "troubleshooting.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for line := range strings.Lines(string(b)) {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			h = strings.TrimSpace(strings.TrimLeft(h, "#"))
			anchors[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
		}
	}
	return anchors
}

func TestPrometheusRule(t *testing.T) {
	if pr := render(t).kinds("PrometheusRule"); len(pr) != 0 {
		t.Errorf("PrometheusRule rendered by default: %v", pr)
	}
	m := render(t, append(valueSets["operations"], "--set", "prometheusRule.alertsPerMinute=12")...)
	pr := strictly[prometheusRule](t, get[*map[string]any](t, m, "PrometheusRule", namespace, "parley"))
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Errorf("PrometheusRule is %s %s", pr.APIVersion, pr.Kind)
	}
	if pr.Metadata.Labels["release"] != "prom" || pr.Metadata.Labels["app.kubernetes.io/name"] != "parley" {
		t.Errorf("labels %v: want release=prom from prometheusRule.labels, with the chart's", pr.Metadata.Labels)
	}
	served := servedMetrics(t)
	anchors := troubleshootingAnchors(t)
	var alerts, exprs []string
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			exprs = append(exprs, r.Expr)
			if r.For == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: for %q, labels %v, annotations %v: want for, severity, summary and description", r.Alert, r.For, r.Labels, r.Annotations)
			}
			page, anchor, _ := strings.Cut(r.Annotations["runbook_url"], "#")
			if !strings.HasSuffix(page, "/docs/troubleshooting.md") || anchor != strings.ToLower(r.Alert) || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q: want docs/troubleshooting.md#%s, a section there", r.Alert, r.Annotations["runbook_url"], strings.ToLower(r.Alert))
			}
		}
	}
	checkExprs(t, served, "PrometheusRule", exprs)
	want := []string{"ParleyConnectorDisconnected", "ParleyConnectorPodDisconnected", "ParleyActivitiesDropped", "ParleyAlertRateHigh", "ParleyRulesInvalid",
		"ParleySinkDropping", "ParleySharedMemoryFilesInvalid"}
	if !slices.Equal(alerts, want) {
		t.Errorf("alerts %v, want %v", alerts, want)
	}
	if i := slices.Index(alerts, "ParleyAlertRateHigh"); i < 0 || !strings.HasSuffix(exprs[i], "* 60 > 12") {
		t.Errorf("ParleyAlertRateHigh does not use prometheusRule.alertsPerMinute: %v", exprs)
	}
}

type podMonitor struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		NamespaceSelector struct {
			Any        bool     `json:"any"`
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		PodMetricsEndpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Scheme        string `json:"scheme"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
			Relabelings   []struct {
				SourceLabels []string `json:"sourceLabels"`
				TargetLabel  string   `json:"targetLabel"`
			} `json:"relabelings"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

func TestPodMonitor(t *testing.T) {
	if pm := render(t).kinds("PodMonitor"); len(pm) != 0 {
		t.Errorf("PodMonitor rendered by default: %v", pm)
	}
	m := render(t, valueSets["operations"]...)
	pm := strictly[podMonitor](t, get[*map[string]any](t, m, "PodMonitor", namespace, "parley-connectors"))
	if pm.APIVersion != "monitoring.coreos.com/v1" || pm.Kind != "PodMonitor" {
		t.Errorf("PodMonitor is %s %s", pm.APIVersion, pm.Kind)
	}
	if pm.Metadata.Labels["release"] != "prom" {
		t.Errorf("labels %v: want release=prom from metrics.podMonitor.labels", pm.Metadata.Labels)
	}
	// It selects what the operator labels connector pods with, and not the operator's pods.
	if !subset(pm.Spec.Selector.MatchLabels, v1alpha1.ConnectorLabels("any")) || pm.Spec.Selector.MatchLabels["app.kubernetes.io/component"] != "connector" {
		t.Errorf("selector %v does not select connector pods %v", pm.Spec.Selector.MatchLabels, v1alpha1.ConnectorLabels("any"))
	}
	if !pm.Spec.NamespaceSelector.Any || len(pm.Spec.NamespaceSelector.MatchNames) != 0 {
		t.Errorf("namespaceSelector %+v: want any namespace when all are watched", pm.Spec.NamespaceSelector)
	}
	if eps := pm.Spec.PodMetricsEndpoints; len(eps) != 1 || eps[0].Port != v1alpha1.MetricsPortName || eps[0].Path != "/metrics" || eps[0].Scheme != "http" ||
		eps[0].Interval != "30s" || eps[0].ScrapeTimeout != "10s" || len(eps[0].Relabelings) != 1 ||
		!slices.Equal(eps[0].Relabelings[0].SourceLabels, []string{"__meta_kubernetes_pod_label_" + strings.NewReplacer(".", "_", "/", "_").Replace(v1alpha1.LabelConnector)}) ||
		eps[0].Relabelings[0].TargetLabel != "connector" {
		t.Errorf("podMetricsEndpoints %+v: want the metrics port over http, the connector's name as connector", eps)
	}
	m = render(t, append(valueSets["operations"], "--set", "watchNamespaces={decoys,qa}")...)
	pm = strictly[podMonitor](t, get[*map[string]any](t, m, "PodMonitor", namespace, "parley-connectors"))
	if pm.Spec.NamespaceSelector.Any || !slices.Equal(pm.Spec.NamespaceSelector.MatchNames, []string{"decoys", "qa"}) {
		t.Errorf("watchNamespaces: namespaceSelector %+v, want the watched namespaces", pm.Spec.NamespaceSelector)
	}
}
