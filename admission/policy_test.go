package admission

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// brokenRules has three compile errors, one in each of two rules, out of field order.
const brokenRules = `
spec:
  operation: {mode: Server, transport: TCP, port: 7000}
  conversation:
    rules:
    - {id: 8, mode: Sync, regex: "a", response: "{{nope}}", trigger: [{ruleID: 99}]}
    - {id: 7, mode: Sync, regex: "(", response: "x"}
`

func spec(t *testing.T, doc string) *v1alpha1.ConversationRulesSpec {
	t.Helper()
	var cr v1alpha1.ConversationRules
	if err := yaml.UnmarshalStrict([]byte(doc), &cr); err != nil {
		t.Fatal(err)
	}
	return &cr.Spec
}

func TestCheckRules(t *testing.T) {
	cases := []struct {
		name         string
		doc          string
		errs, warned []string
	}{
		{"valid, no warnings", `
spec:
  operation: {mode: Server, transport: TCP, port: 7000}
  conversation:
    rules: [{id: 1, mode: Sync, regex: "^PING", response: "PONG"}]
`, nil, nil},
		// The lines `parley check` prints after "<file>: <name>: ", in its order: by field,
		// each rule named by its id beside its index.
		{"every error with its field path, as parley check says it", brokenRules, []string{
			`spec.conversation.rules[0] (id 8).response: Invalid value: "{{nope}}": unknown template variable (declare it under spec.memory, or use IP or PORT; SESSION_KEY and SESSION_VALUE need operation.session)`,
			`spec.conversation.rules[0] (id 8).trigger[0].ruleID: Not found: 99`,
			"spec.conversation.rules[1] (id 7).regex: Invalid value: \"(\": error parsing regexp: missing closing ): `(`",
		}, nil},
		{"lint warnings of rules that compile", `
spec:
  operation: {mode: Server, transport: TCP, port: 7000, connectionQueue: 2, maxConcurrentConnections: 5}
`, nil, []string{"spec.operation.connectionQueue: a backlog of 2 cannot hold a burst of the 5 peers"}},
		{"capacityPolicy EvictIdlest off a UDP server is an error", `
spec:
  operation: {mode: Server, transport: TCP, port: 7000, capacityPolicy: EvictIdlest}
`, []string{"spec.operation.capacityPolicy: Forbidden: EvictIdlest is for UDP servers without DTLS"}, nil},
		{"a missing port in server mode is an error", `
spec:
  operation: {mode: Server, transport: TCP}
`, []string{"spec.operation.port: Required value"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs, warnings := CheckRules(spec(t, tc.doc))
			var got []string
			for _, e := range errs {
				got = append(got, e.Field+": "+e.ErrorBody())
			}
			checkLines(t, "errors", got, tc.errs)
			checkLines(t, "warnings", warnings, tc.warned)
		})
	}
}

// checkLines wants as many lines as want, each starting with its want.
func checkLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d, want %d:\n%s", what, len(got), len(want), strings.Join(got, "\n"))
		return
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("%s[%d]:\n got %s\nwant %s...", what, i, got[i], want[i])
		}
	}
}

func TestCheckConnector(t *testing.T) {
	ok := func() v1alpha1.ExternalConnectorSpec { return v1alpha1.ExternalConnectorSpec{Rules: "fake-redis"} }
	cases := []struct {
		name   string
		cname  string // the connector's name; "redis-decoy" if empty
		mutate func(s *v1alpha1.ExternalConnectorSpec)
		errs   []string // "<field>: <type>" of each error, in order
		warned []string // prefixes of the warnings, in order
	}{
		{name: "rules by name", mutate: func(*v1alpha1.ExternalConnectorSpec) {}},
		{name: "rules that do not exist yet are not an error: the connector waits for them", mutate: func(s *v1alpha1.ExternalConnectorSpec) { s.Rules = "written-later" }},
		{name: "group", mutate: func(s *v1alpha1.ExternalConnectorSpec) { s.Rules, s.Group = "", "redis" }},
		{name: "neither rules nor group", mutate: func(s *v1alpha1.ExternalConnectorSpec) { s.Rules = "" },
			errs: []string{"spec.rules: Required value"}},
		{name: "both rules and group", mutate: func(s *v1alpha1.ExternalConnectorSpec) { s.Group = "redis" },
			errs: []string{"spec.group: Forbidden"}},
		{name: "rules no object can be named", mutate: func(s *v1alpha1.ExternalConnectorSpec) { s.Rules = "Fake_Redis" },
			errs: []string{"spec.rules: Invalid value"}},
		{name: "name with a dot cannot name pods or a Job", cname: "redis.decoy", mutate: func(*v1alpha1.ExternalConnectorSpec) {},
			errs: []string{"metadata.name: Invalid value"}},
		{name: "name of 64 characters", cname: strings.Repeat("a", 64), mutate: func(*v1alpha1.ExternalConnectorSpec) {},
			errs: []string{"metadata.name: Invalid value"}},
		{name: "name starting with a digit works in client mode only", cname: "1decoy", mutate: func(*v1alpha1.ExternalConnectorSpec) {},
			warned: []string{`metadata.name: "1decoy" cannot name a Service`}},
		{name: "ip override: an address", mutate: func(s *v1alpha1.ExternalConnectorSpec) { s.IP = "::1" }},
		{name: "ip override: a host name", mutate: func(s *v1alpha1.ExternalConnectorSpec) { s.IP = "Redis.example.com" }},
		{name: "ip override: neither", mutate: func(s *v1alpha1.ExternalConnectorSpec) { s.IP = "10.0.0.1:6379" },
			errs: []string{"spec.ip: Invalid value"}},
		{name: "service type", mutate: func(s *v1alpha1.ExternalConnectorSpec) { s.Service.Type = corev1.ServiceTypeExternalName },
			errs: []string{"spec.service.type: Unsupported value"}},
		{name: "externalTrafficPolicy Local on a LoadBalancer", mutate: func(s *v1alpha1.ExternalConnectorSpec) {
			s.Service.Type, s.Service.ExternalTrafficPolicy = corev1.ServiceTypeLoadBalancer, corev1.ServiceExternalTrafficPolicyLocal
		}},
		{name: "externalTrafficPolicy on a ClusterIP Service is ignored", mutate: func(s *v1alpha1.ExternalConnectorSpec) {
			s.Service.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}, warned: []string{"spec.service.externalTrafficPolicy: ignored"}},
		{name: "externalTrafficPolicy unknown", mutate: func(s *v1alpha1.ExternalConnectorSpec) {
			s.Service.Type, s.Service.ExternalTrafficPolicy = corev1.ServiceTypeNodePort, "Nearest"
		}, errs: []string{"spec.service.externalTrafficPolicy: Unsupported value"}},
		{name: "service annotation key", mutate: func(s *v1alpha1.ExternalConnectorSpec) {
			s.Service.Annotations = map[string]string{"not a key": "x"}
		}, errs: []string{"spec.service.annotations: Invalid value"}},
		{name: "tls secret names", mutate: func(s *v1alpha1.ExternalConnectorSpec) {
			s.TLS = &v1alpha1.ConnectorTLS{SecretName: "redis_tls", ClientCASecretName: "CA"}
		}, errs: []string{"spec.tls.secretName: Invalid value", "spec.tls.clientCASecretName: Invalid value"}},
		{name: "tls valid", mutate: func(s *v1alpha1.ExternalConnectorSpec) {
			s.TLS = &v1alpha1.ConnectorTLS{SecretName: "redis-tls", ClientCASecretName: "clients-ca", ServerName: "Redis.example.com"}
		}},
		{name: "tls serverName not a host name", mutate: func(s *v1alpha1.ExternalConnectorSpec) {
			s.TLS = &v1alpha1.ConnectorTLS{ServerName: "redis example"}
		}, errs: []string{"spec.tls.serverName: Invalid value"}},
		{name: "tls serverName with insecureSkipVerify", mutate: func(s *v1alpha1.ExternalConnectorSpec) {
			s.TLS = &v1alpha1.ConnectorTLS{ServerName: "redis.example.com", InsecureSkipVerify: true}
		}, warned: []string{"spec.tls.serverName: ignored"}},
		{name: "negative ttl", mutate: func(s *v1alpha1.ExternalConnectorSpec) {
			s.Activities.TTL = &metav1.Duration{Duration: -time.Hour}
		}, errs: []string{"spec.activities.ttl: Invalid value"}},
		{name: "negative grace period", mutate: func(s *v1alpha1.ExternalConnectorSpec) {
			s.GracePeriod = &metav1.Duration{Duration: -time.Second}
		}, errs: []string{"spec.gracePeriod: Invalid value"}},
		{name: "pod labels, annotations and nodeSelector syntax", mutate: func(s *v1alpha1.ExternalConnectorSpec) {
			s.Pod.Labels = map[string]string{"team": "blue red"}
			s.Pod.Annotations = map[string]string{"-bad": ""}
			s.Pod.NodeSelector = map[string]string{"-disk": "ssd"}
		}, errs: []string{"spec.pod.labels: Invalid value", "spec.pod.annotations: Invalid value", "spec.pod.nodeSelector: Invalid value"}},
		{name: "pod labels the operator sets itself", mutate: func(s *v1alpha1.ExternalConnectorSpec) {
			s.Pod.Labels = map[string]string{v1alpha1.LabelConnector: "other", "app.kubernetes.io/component": "x", "team": "blue"}
		}, warned: []string{"spec.pod.labels[app.kubernetes.io/component]: ignored", "spec.pod.labels[" + v1alpha1.LabelConnector + "]: ignored"}},
		{name: "requests above limits", mutate: func(s *v1alpha1.ExternalConnectorSpec) {
			s.Pod.Resources = corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi"), corev1.ResourceCPU: resource.MustParse("10m")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
			}
		}, errs: []string{"spec.pod.resources.requests[memory]: Invalid value"}},
		{name: "negative limit", mutate: func(s *v1alpha1.ExternalConnectorSpec) {
			s.Pod.Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("-1")}
		}, errs: []string{"spec.pod.resources.limits[cpu]: Invalid value"}},
		{name: "every error at once", cname: "a.b", mutate: func(s *v1alpha1.ExternalConnectorSpec) {
			s.Rules, s.IP, s.Port, s.GracePeriod = "", "a b", ptr.To[int32](1), &metav1.Duration{Duration: -1}
		}, errs: []string{"metadata.name: Invalid value", "spec.rules: Required value", "spec.ip: Invalid value", "spec.gracePeriod: Invalid value"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := ok()
			tc.mutate(&s)
			name := tc.cname
			if name == "" {
				name = "redis-decoy"
			}
			errs, warnings := CheckConnector(name, &s)
			var got []string
			for _, e := range errs {
				got = append(got, e.Field+": "+e.Type.String())
			}
			if !slices.Equal(got, tc.errs) {
				t.Errorf("errors:\n got %q\nwant %q\n(%v)", got, tc.errs, errs)
			}
			checkLines(t, "warnings", warnings, tc.warned)
		})
	}
}

func TestCheckActivitySink(t *testing.T) {
	hook := func() v1alpha1.ActivitySinkSpec {
		return v1alpha1.ActivitySinkSpec{Webhook: &v1alpha1.WebhookSink{URL: "https://hooks.example/x", SecretRef: &v1alpha1.SecretKeyRef{Name: "hook"}}}
	}
	cases := []struct {
		name   string
		mutate func(s *v1alpha1.ActivitySinkSpec)
		errs   []string // "<field>: <type>" of each error, in order
	}{
		{name: "webhook", mutate: func(*v1alpha1.ActivitySinkSpec) {}},
		{name: "a Secret that does not exist yet is not an error: Ready says so", mutate: func(s *v1alpha1.ActivitySinkSpec) {
			s.Webhook.SecretRef.Name = "written-later"
		}},
		{name: "no destination", mutate: func(s *v1alpha1.ActivitySinkSpec) { s.Webhook = nil },
			errs: []string{"spec: Invalid value"}},
		{name: "two destinations", mutate: func(s *v1alpha1.ActivitySinkSpec) {
			s.Kafka = &v1alpha1.KafkaSink{Brokers: []string{"kafka:9092"}, Topic: "t"}
		}, errs: []string{"spec: Invalid value"}},
		{name: "webhook URL not http", mutate: func(s *v1alpha1.ActivitySinkSpec) { s.Webhook.URL = "ftp://x/y" },
			errs: []string{"spec.webhook.url: Invalid value"}},
		{name: "webhook TLS on http", mutate: func(s *v1alpha1.ActivitySinkSpec) {
			s.Webhook.URL, s.Webhook.TLS = "http://x/y", &v1alpha1.SinkTLS{}
		}, errs: []string{"spec.webhook.tls: Forbidden"}},
		{name: "filter type unknown", mutate: func(s *v1alpha1.ActivitySinkSpec) { s.Filter.Types = []v1alpha1.ActivityType{"Input", "Inputs"} },
			errs: []string{"spec.filter.types[1]: Unsupported value"}},
		{name: "selector operator unknown", mutate: func(s *v1alpha1.ActivitySinkSpec) {
			s.ConnectorSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: "Near"}}}
		}, errs: []string{"spec.connectorSelector: Invalid value"}},
		{name: "syslog without port, unknown facility", mutate: func(s *v1alpha1.ActivitySinkSpec) {
			s.Webhook, s.Syslog = nil, &v1alpha1.SyslogSink{Address: "tcp://siem", Facility: "local9"}
		}, errs: []string{"spec.syslog.address: Invalid value", "spec.syslog.facility: Invalid value"}},
		{name: "syslog TLS on udp", mutate: func(s *v1alpha1.ActivitySinkSpec) {
			s.Webhook, s.Syslog = nil, &v1alpha1.SyslogSink{Address: "udp://siem:514", TLS: &v1alpha1.SinkTLS{}}
		}, errs: []string{"spec.syslog.tls: Forbidden"}},
		{name: "kafka broker and topic", mutate: func(s *v1alpha1.ActivitySinkSpec) {
			s.Webhook, s.Kafka = nil, &v1alpha1.KafkaSink{Brokers: []string{"kafka"}, Topic: "a topic"}
		}, errs: []string{"spec.kafka.brokers[0]: Invalid value", "spec.kafka.topic: Invalid value"}},
		{name: "kafka SASL mechanism", mutate: func(s *v1alpha1.ActivitySinkSpec) {
			s.Webhook, s.Kafka = nil, &v1alpha1.KafkaSink{Brokers: []string{"kafka:9093"}, Topic: "t",
				SASL: &v1alpha1.KafkaSASL{Mechanism: "GSSAPI", SecretRef: v1alpha1.SecretKeyRef{Name: "kafka"}}}
		}, errs: []string{"spec.kafka.sasl.mechanism: Unsupported value"}},
		{name: "email addresses and interval", mutate: func(s *v1alpha1.ActivitySinkSpec) {
			s.Webhook, s.Email = nil, &v1alpha1.EmailSink{SMTP: "mail.example:587", From: "parley", To: []string{"soc@example", "x y"},
				Interval: &metav1.Duration{Duration: -time.Minute}}
		}, errs: []string{"spec.email.from: Invalid value", "spec.email.to[1]: Invalid value", "spec.email.interval: Invalid value"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := hook()
			c.mutate(&s)
			var got []string
			for _, e := range CheckActivitySink(&s) {
				got = append(got, e.Field+": "+e.Type.String())
			}
			if !slices.Equal(got, c.errs) {
				t.Errorf("errors %q, want %q", got, c.errs)
			}
		})
	}
}
