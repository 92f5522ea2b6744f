package engine_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/freeport"
	"github.com/parley-dev/parley/internal/transcript"
)

// rulesYAML is a line service: a greeting, PING answered with PONG and the rules' version,
// QUIT ending the conversation, and an ending sent when the connector stops. Every socket
// is a conversation of its own (identifyBy: Address): the tests' peers all come from 127.0.0.1.
func rulesYAML(version string) string {
	return `
operation: {port: 7000, interactionTimeout: 60s, identifyBy: Address}
memory: {connection: [{name: password}]}
conversation:
  greetings: {value: "+OK ready\r\n"}
  default:   {value: "-ERR unknown\r\n"}
  ending:    {value: "+OK bye\r\n"}
  rules:
  - {id: 1, mode: Sync, regex: "^PING", response: "+PONG ` + version + `\r\n"}
  - {id: 2, mode: Sync, regex: "^QUIT", ending: true}
  - {id: 3, mode: Sync, regex: "^AUTH", response: "+OK\r\n", alert: true, captures: [{regex: "^AUTH (\\S+)", variable: password}]}
`
}

// fixture is a ConversationRules and an ExternalConnector serving it on a loopback port.
type fixture struct {
	ns, name string
	port     int
}

func newFixture(t *testing.T, mutate func(*v1alpha1.ExternalConnector)) fixture {
	t.Helper()
	ctx := context.Background()
	f := fixture{ns: namespace(t), name: "decoy"}
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	f.port = port
	cr := &v1alpha1.ConversationRules{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "lines"}}
	if err := yaml.UnmarshalStrict([]byte(rulesYAML("v1")), &cr.Spec); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, cr); err != nil {
		t.Fatal(err)
	}
	p := int32(port)
	ec := &v1alpha1.ExternalConnector{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: f.name},
		Spec: v1alpha1.ExternalConnectorSpec{Rules: "lines", Port: &p, IP: "127.0.0.1"}}
	if mutate != nil {
		mutate(ec)
	}
	if err := k8s.Create(ctx, ec); err != nil {
		t.Fatal(err)
	}
	eventually(t, "rules resolved", func() error {
		got := f.connector(t)
		if got.Status.Rules == nil {
			return fmt.Errorf("status.rules unset: %+v", got.Status.Conditions)
		}
		return nil
	})
	return f
}

func (f fixture) key() types.NamespacedName {
	return types.NamespacedName{Namespace: f.ns, Name: f.name}
}

func (f fixture) connector(t *testing.T) *v1alpha1.ExternalConnector {
	t.Helper()
	var ec v1alpha1.ExternalConnector
	if err := k8s.Get(context.Background(), f.key(), &ec); err != nil {
		t.Fatal(err)
	}
	return &ec
}

// start runs a connector process against the main engine and waits until it serves.
func (f fixture) start(t *testing.T, extra ...string) *connectorProcess {
	t.Helper()
	p := startConnector(t, f.ns, f.name, mainEngine.Address(), secretFiles(t, f.ns, f.name), extra...)
	f.waitServing(t, p)
	return p
}

func (f fixture) waitServing(t *testing.T, p *connectorProcess) {
	t.Helper()
	eventually(t, "the connector serves", func() error {
		c, err := net.DialTimeout("tcp", f.addr(), time.Second)
		if err != nil {
			return err
		}
		_ = c.Close()
		return nil
	})
}

func (f fixture) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(f.port)) }

// peer is a third party's connection to the connector.
type peer struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func (f fixture) dial(t *testing.T) *peer {
	t.Helper()
	c, err := net.DialTimeout("tcp", f.addr(), wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &peer{t: t, conn: c, r: bufio.NewReader(c)}
}

func (p *peer) expect(want string) {
	p.t.Helper()
	_ = p.conn.SetReadDeadline(time.Now().Add(wait))
	line, err := p.r.ReadString('\n')
	if err != nil {
		p.t.Fatalf("read %q: %v (got %q)", want, err, line)
	}
	if line != want {
		p.t.Fatalf("got %q, want %q", line, want)
	}
}

// say sends one line and expects one answer; it waits a little first, since one read is one
// input and lines sent back to back could arrive together.
func (p *peer) say(line, want string) {
	p.t.Helper()
	if _, err := p.conn.Write([]byte(line)); err != nil {
		p.t.Fatal(err)
	}
	p.expect(want)
}

func (f fixture) activities(t *testing.T) []v1alpha1.Activity {
	t.Helper()
	var list v1alpha1.ActivityList
	if err := k8s.List(context.Background(), &list, client.InNamespace(f.ns),
		client.MatchingLabels{v1alpha1.LabelConnector: f.name}); err != nil {
		t.Fatal(err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items
}

func (f fixture) events(t *testing.T, reason string) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(f.ns)); err != nil {
		t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Reason == reason && e.Regarding.Name == f.name {
			out = append(out, e)
		}
	}
	return out
}

func (f fixture) waitEvent(t *testing.T, reason string) eventsv1.Event {
	t.Helper()
	var got []eventsv1.Event
	eventually(t, "a "+reason+" event", func() error {
		if got = f.events(t, reason); len(got) == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	return got[0]
}

func TestActivitiesReachTheCluster(t *testing.T) {
	f := newFixture(t, nil)
	f.start(t)
	p := f.dial(t)
	p.expect("+OK ready\r\n")
	p.say("PING\r\n", "+PONG v1\r\n")
	p.say("AUTH admin hunter2\r\n", "+OK\r\n")
	p.say("QUIT\r\n", "+OK bye\r\n")

	var input, alert *v1alpha1.Activity
	eventually(t, "the conversation's activities", func() error {
		input, alert = nil, nil
		types := map[v1alpha1.ActivityType]int{}
		for _, a := range f.activities(t) {
			types[a.Type]++
			if a.Type == v1alpha1.ActivityInput && a.Input != nil && a.Input.Text == "PING\r\n" {
				input = a.DeepCopy()
			}
			if a.Alert {
				alert = a.DeepCopy()
			}
		}
		for _, want := range []v1alpha1.ActivityType{v1alpha1.ActivityConnectorStarted, v1alpha1.ActivityConnected,
			v1alpha1.ActivityGreeted, v1alpha1.ActivityEnded} {
			if types[want] == 0 {
				return fmt.Errorf("no %s activity yet: %v", want, types)
			}
		}
		if types[v1alpha1.ActivityInput] < 3 || input == nil || alert == nil {
			return fmt.Errorf("inputs %d, ping found %v, alert found %v", types[v1alpha1.ActivityInput], input != nil, alert != nil)
		}
		return nil
	})
	ec := f.connector(t)
	if input.Connector != f.name || input.Connection == nil || !strings.HasPrefix(input.Connection.Peer, "127.0.0.1:") ||
		input.Connection.Transport != v1alpha1.TransportTCP {
		t.Errorf("connector and connection: %q %+v", input.Connector, input.Connection)
	}
	if input.Rules == nil || len(input.Rules.Executed) != 1 || input.Rules.Executed[0] != 1 {
		t.Errorf("rules: %+v", input.Rules)
	}
	if input.Input.Preview != `PING\r\n` {
		t.Errorf("preview %q, want the escaped input", input.Input.Preview)
	}
	if o := input.Output; o == nil || o.Text != "+PONG v1\r\n" || o.Base64 != "K1BPTkcgdjENCg==" || o.Bytes != 10 || o.Truncated {
		t.Errorf("output %+v, want the reply", o)
	}
	// parley transcript --from-cluster reads the conversation back from these objects.
	entries, err := transcript.FromCluster(context.Background(), k8s, f.ns, f.name, input.Connection.ID)
	if err != nil {
		t.Fatal(err)
	}
	conv, err := transcript.Pick(transcript.Conversations(entries), transcript.Choice{ID: input.Connection.ID})
	if err != nil {
		t.Fatal(err)
	}
	var dialogue strings.Builder
	if err := transcript.Write(&dialogue, conv); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Connector:  decoy\n", "Rules:      lines generation 1 sha256:", ">> +OK ready\\r\\n\n",
		"<< PING\\r\\n\n", ">> +PONG v1\\r\\n\n", "Input  ALERT  rule 3  password=\"admin\"\n", "<< AUTH admin hunter2\\r\\n\n", "Ended  ending rule 2\n"} {
		if !strings.Contains(dialogue.String(), want) {
			t.Errorf("transcript lacks %q:\n%s", want, dialogue.String())
		}
	}
	if r := input.RulesRef; r == nil || r.Name != "lines" || r.Generation != 1 || r.Hash != ec.Status.Rules.Hash {
		t.Errorf("rulesRef %+v, want lines generation 1 hash %s", r, ec.Status.Rules.Hash)
	}
	if l := input.Labels; l[v1alpha1.LabelConnector] != f.name || l["parley.io/type"] != "Input" || l["parley.io/connection"] != input.Connection.ID {
		t.Errorf("labels %v", l)
	}
	if refs := input.OwnerReferences; len(refs) != 1 || refs[0].UID != ec.UID {
		t.Errorf("owner references %+v, want the connector %s", refs, ec.UID)
	}
	parts := strings.Split(strings.TrimPrefix(input.Name, f.name+"-"), "-")
	if len(parts) != 2 || len(parts[0]) != 8 || len(parts[1]) != 6 {
		t.Errorf("name %q, want %s-<run>-<seq>", input.Name, f.name)
	}

	eventually(t, "status counters and EngineConnected", func() error {
		ec := f.connector(t)
		st := ec.Status
		c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionEngineConnected)
		if c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("EngineConnected %+v", c)
		}
		if n := int64(len(f.activities(t))); st.Activities.Total != n || st.Activities.Recorded != n || st.Activities.Dropped != 0 {
			return fmt.Errorf("activities %+v, want total and recorded %d", st.Activities, n)
		}
		if st.Connections.Total < 1 || st.LastActivityTime == nil {
			return fmt.Errorf("connections %+v, last activity %v", st.Connections, st.LastActivityTime)
		}
		return nil
	})
	// The same counts as metrics.
	written := float64(len(f.activities(t)))
	for name, want := range map[string]float64{
		"parley_engine_activities_received_total": written,
		"parley_engine_activities_written_total":  written,
		"parley_engine_inputs_total":              3,
		"parley_engine_rules_fired_total":         3,
		"parley_engine_alerts_total":              1,
		"parley_engine_connected_pods":            1,
	} {
		if got := metric(t, mainMetrics, name, f.ns, f.name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	f.waitEvent(t, "Started")
	ev := f.waitEvent(t, "RuleAlert")
	if ev.Type != "Warning" || !strings.Contains(ev.Note, `input "AUTH *** hunter2\r\n"`) {
		t.Errorf("RuleAlert event %s %q", ev.Type, ev.Note)
	}
}
