package transcript_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/transcript"
)

// readFixture reads testdata/ftp.json: a fake-ftp log with a line a shell mixed in, a
// refused peer, a conversation with a binary input, an alert, async replies (one to a
// socket that joined), an output cut in the middle of a character, an error and an ending;
// and a second conversation still going on when the log stops.
func readFixture(t *testing.T) []*transcript.Conversation {
	t.Helper()
	f, err := os.Open("testdata/ftp.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries, err := transcript.ReadLog(f)
	if err != nil {
		t.Fatal(err)
	}
	return transcript.Conversations(entries)
}

func TestWriteDialogue(t *testing.T) {
	convs := readFixture(t)
	for _, tc := range []struct {
		id, want string
	}{
		{"c-000001", `Connector:  fake-ftp
Connection: c-000001 (TCP)
Peer:       203.0.113.9:51122
Rules:      fake-ftp generation 3 sha256:b8046544
Started:    2026-11-22T00:42:36.460388Z

+0.000s  Connected
+0.000s  Greeted
         >> 220 FTP server ready\r\n
+0.200s  Input  rule 1  user="alice"
         << USER alice\r\n
         >> 331 Password required for alice\r\n
+0.540s  Input  default
         << 00000000  16 03 01 00 a5 01 00 00  a1 03 03 5a 00 10 20 30  |...........Z.. 0|
         << 00000010  40 50 0d 0a                                       |@P..|
         >> 500 Unknown command\r\n
+1.401s  Input  ALERT  rule 10  schedules 20, 21
         << PASS "s3cret\\"\r\n
         >> 530 Login incorrect (attempt 1)\r\n
+1.401s  Async  rule 20
+2.401s  Async  rule 21  peer 203.0.113.9:51130
         >> 421 slow down\r\n
+2.640s  Input  rule 11
         << HELP\r\n
         >> 214-Befehle:\r\n
         >>  USER PASS QUIT\r\n
         >> 214 Gr
         >> … 6 more bytes not recorded
+2.640s  Error  rule 11: variable user: value cut to 65536 bytes
+4.401s  Input  rule 2
         << QUIT\r\n
         >> 221 Goodbye\r\n
+4.401s  Ended  ending rule 2
         >> 221 Closing\r\n
`},
		{"c-000002", `Connector:  fake-ftp
Connection: c-000002 (TCP)
Peer:       192.0.2.1:6000
Rules:      fake-ftp generation 3 sha256:b8046544
Started:    2026-11-22T00:42:41.000000Z

+0.000s  Connected
+0.001s  Input  ALERT  default
         << GET / HTTP/1.1\r\n
         << Host: x\r\n
         << \r\n
(no end recorded: the conversation was still going on, or its end was not kept)
`},
	} {
		t.Run(tc.id, func(t *testing.T) {
			c, err := transcript.Pick(convs, transcript.Choice{ID: tc.id})
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if err := transcript.Write(&b, c); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", b.String(), tc.want)
			}
		})
	}
}

// rec makes an activity of conversation id of connector at second sec.
func rec(connector, id string, typ v1alpha1.ActivityType, sec int) string {
	return `{"connector":"` + connector + `","time":"2026-11-22T00:00:` + twoDigits(sec) + `.000000Z","type":"` + string(typ) +
		`","connection":{"id":"` + id + `","peer":"192.0.2.1:` + twoDigits(sec) + `","transport":"TCP"}}`
}

func twoDigits(n int) string { return string([]byte{byte('0' + n/10), byte('0' + n%10)}) }

func started(connector string) string {
	return `{"connector":"` + connector + `","time":"2026-11-22T00:00:00.000000Z","type":"ConnectorStarted"}`
}

func TestReadLog(t *testing.T) {
	for _, tc := range []struct {
		name, log string
		want      string // connector/run/id of each entry
		err       string
	}{
		{name: "one run has no run number", log: started("a") + "\n" + rec("a", "c-000001", "Connected", 1) + "\n",
			want: "a//, a//c-000001"},
		{name: "a connector started again begins a run",
			log:  started("a") + "\n" + rec("a", "c-000001", "Connected", 1) + "\n" + started("b") + "\n" + started("a") + "\n" + rec("a", "c-000001", "Connected", 2),
			want: "a/1/, a/1/c-000001, b//, a/2/, a/2/c-000001"},
		{name: "a log cut before the start", log: rec("a", "c-000001", "Input", 1) + "\n" + started("a") + "\n",
			want: "a/1/c-000001, a/2/"},
		{name: "lines that are not JSON objects are skipped", log: "\nparley: a: 1 conversation\n  " + started("a") + "  \r\n",
			want: "a//"},
		{name: "a broken object names its line", log: started("a") + "\n\n{\"type\": 3}\n", err: "line 3: not an activity"},
		{name: "empty", log: "", want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries, err := transcript.ReadLog(strings.NewReader(tc.log))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range entries {
				id := ""
				if e.Record.Connection != nil {
					id = e.Record.Connection.ID
				}
				got = append(got, e.Record.Connector+"/"+e.Run+"/"+id)
			}
			if strings.Join(got, ", ") != tc.want {
				t.Errorf("entries %s, want %s", strings.Join(got, ", "), tc.want)
			}
		})
	}
}

// convs builds conversations from log lines.
func convs(t *testing.T, lines ...string) []*transcript.Conversation {
	t.Helper()
	entries, err := transcript.ReadLog(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return transcript.Conversations(entries)
}

func TestPick(t *testing.T) {
	one := convs(t, rec("a", "c-000001", "Connected", 1), rec("a", "c-000001", "Ended", 2))
	two := convs(t, rec("a", "c-000001", "Connected", 1), rec("a", "c-000002", "Connected", 2))
	shared := convs(t, rec("a", "c-000001", "Connected", 1), rec("a", "c-000002", "Connected", 2), rec("b", "c-000001", "Connected", 3))
	runs := convs(t, started("a"), rec("a", "c-000001", "Connected", 1), started("a"), rec("a", "c-000001", "Connected", 2))
	for _, tc := range []struct {
		name   string
		convs  []*transcript.Conversation
		choice transcript.Choice
		want   string // the conversation picked (connector/run/id and its step count), or the error
		listed int    // candidates listed with the error
	}{
		{"the only one", one, transcript.Choice{}, "a//c-000001 (2 steps)", 0},
		{"by id", two, transcript.Choice{ID: "c-000002"}, "a//c-000002 (1 steps)", 0},
		{"several, no id", two, transcript.Choice{}, "2 conversations: name one, as in: parley transcript c-000001", 2},
		{"an id only one connector has", shared, transcript.Choice{ID: "c-000002"}, "a//c-000002 (1 steps)", 0},
		{"an id several connectors have", shared, transcript.Choice{ID: "c-000001"},
			"c-000001 names 2 conversations: choose with --connector a or b", 2},
		{"an id and a connector", shared, transcript.Choice{ID: "c-000001", Connector: "b"}, "b//c-000001 (1 steps)", 0},
		{"several connectors, no id", shared, transcript.Choice{},
			"3 conversations: name one, as in: parley transcript c-000001 --connector a", 3},
		{"a connector with one conversation", shared, transcript.Choice{Connector: "b"}, "b//c-000001 (1 steps)", 0},
		{"an unknown connector", shared, transcript.Choice{ID: "c-000001", Connector: "z"},
			`no conversation of connector "z": connectors: a, b`, 3},
		{"an unknown id", two, transcript.Choice{ID: "c-000009"}, "no conversation c-000009: name one of those listed", 2},
		{"an id in two runs", runs, transcript.Choice{ID: "c-000001"}, "c-000001 names 2 conversations: choose with --run 1 or 2", 2},
		{"two runs, no id", runs, transcript.Choice{}, "2 conversations: name one, as in: parley transcript c-000001 --run 1", 2},
		{"an id in two runs of the second connector", convs(t, rec("a", "c-000001", "Connected", 1), started("b"),
			rec("b", "c-000001", "Connected", 2), started("b"), rec("b", "c-000001", "Connected", 3)), transcript.Choice{ID: "c-000001"},
			"c-000001 names 3 conversations: choose with --connector a or b and --run 1 or 2", 3},
		{"an id and a run", runs, transcript.Choice{ID: "c-000001", Run: "2"}, "a/2/c-000001 (1 steps)", 0},
		{"nothing recorded", nil, transcript.Choice{}, "no conversation recorded", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := transcript.Pick(tc.convs, tc.choice)
			got, listed := "", 0
			var ce *transcript.ChoiceError
			switch {
			case errors.As(err, &ce):
				got, listed = err.Error(), len(ce.Candidates)
			case err != nil:
				t.Fatal(err)
			default:
				got = c.Connector + "/" + c.Run + "/" + c.ID + " (" + twoDigits(len(c.Steps))[1:] + " steps)"
			}
			if got != tc.want || listed != tc.listed {
				t.Errorf("got %q with %d listed, want %q with %d", got, listed, tc.want, tc.listed)
			}
		})
	}
}

func TestWriteList(t *testing.T) {
	input := func(connector, id string, sec int, alert bool) string {
		r := rec(connector, id, "Input", sec)
		if alert {
			r = strings.TrimSuffix(r, "}") + `,"alert":true}`
		}
		return r
	}
	for _, tc := range []struct {
		name  string
		convs []*transcript.Conversation
		want  string
	}{
		{"one connector", readFixture(t), `CONNECTION  PEER               STARTED                      INPUTS  ALERTS
c-000001    203.0.113.9:51122  2026-11-22T00:42:36.460388Z  5       1
c-000002    192.0.2.1:6000     2026-11-22T00:42:41.000000Z  1       1
`},
		{"several connectors, in the order they started", convs(t, rec("b", "c-000001", "Connected", 3), input("b", "c-000001", 4, true),
			rec("a", "c-000001", "Connected", 1), input("a", "c-000001", 2, false), input("a", "c-000001", 5, false)),
			`CONNECTOR  CONNECTION  PEER          STARTED                      INPUTS  ALERTS
a          c-000001    192.0.2.1:01  2026-11-22T00:00:01.000000Z  2       0
b          c-000001    192.0.2.1:03  2026-11-22T00:00:03.000000Z  1       1
`},
		{"several runs", convs(t, started("a"), rec("a", "c-000001", "Connected", 1), started("a"), rec("a", "c-000001", "Connected", 2)),
			`RUN  CONNECTION  PEER          STARTED                      INPUTS  ALERTS
1    c-000001    192.0.2.1:01  2026-11-22T00:00:01.000000Z  0       0
2    c-000001    192.0.2.1:02  2026-11-22T00:00:02.000000Z  0       0
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if err := transcript.WriteList(&b, tc.convs); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", b.String(), tc.want)
			}
		})
	}
}

// Each way a payload shows, in the dialogue of a conversation with one input and its reply.
func TestPayloads(t *testing.T) {
	for _, tc := range []struct {
		name       string
		in, out    string // the JSON of input and output
		wantDetail string // the lines under the step
	}{
		{"text split on line breaks, escaped",
			`{"text":"a\tb\\c\r\nd é →\r\n\r\nend","base64":"YQliXGMNCmQgw6kg4oaSDQoNCmVuZA==","bytes":22}`, `{"bytes":0}`,
			"<< a\\tb\\\\c\\r\\n\n<< d é →\\r\\n\n<< \\r\\n\n<< end\n"},
		{"invisible characters, with no bytes to dump", `{"text":"\u0007\u200b\u0085 \ufeff","base64":"","bytes":9}`, `{"bytes":0}`,
			"<< \\x07\\u200b\\x85 \\ufeff\n"},
		{"not text: a hex dump of the bytes",
			`{"text":"\u0000\u0001ÿ","base64":"AAH/","bytes":3}`, `{"bytes":2,"text":"\u0010\u0000","base64":"EAA="}`,
			"<< 00000000  00 01 ff                                          |...|\n" +
				">> 00000000  10 00                                             |..|\n"},
		{"bytes utf-8 could not decode", `{"text":"ab\ufffd","base64":"YWL/","bytes":3}`, `{"bytes":0}`,
			"<< 00000000  61 62 ff                                          |ab.|\n"},
		{"an input that filled maxInputSize", `{"text":"AAAA","base64":"QUFBQQ==","bytes":4,"truncated":true}`, `{"bytes":0}`,
			"<< AAAA\n<< … (filled maxInputSize)\n"},
		{"an output cut in a character", `{"text":"x","base64":"eA==","bytes":1}`,
			`{"bytes":9,"text":"ok \ufffd","base64":"b2sgww==","truncated":true}`,
			"<< x\n>> ok \n>> … 5 more bytes not recorded\n"},
		{"an output recorded before outputs had text", `{"text":"x","base64":"eA==","bytes":1}`, `{"bytes":5}`,
			"<< x\n>> (5 bytes, not recorded)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := convs(t, `{"connector":"a","time":"2026-11-22T00:00:01.000000Z","type":"Input","connection":{"id":"c-000001","peer":"p","transport":"TCP"},`+
				`"input":`+tc.in+`,"rules":{"basic":"default"},"output":`+tc.out+`}`)
			var b strings.Builder
			if err := transcript.Write(&b, c[0]); err != nil {
				t.Fatal(err)
			}
			_, body, _ := strings.Cut(b.String(), "+0.000s  Input  default\n")
			body, _, _ = strings.Cut(body, "(no end recorded")
			var want strings.Builder
			for _, l := range strings.SplitAfter(tc.wantDetail, "\n") {
				if l != "" {
					want.WriteString("         " + l)
				}
			}
			if body != want.String() {
				t.Errorf("got:\n%s\nwant:\n%s", body, want.String())
			}
		})
	}
}

// activity is an Activity object as the engine names it.
func activity(name, connector, id string, typ v1alpha1.ActivityType, sec int) v1alpha1.Activity {
	a := v1alpha1.Activity{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "decoys",
		Labels: map[string]string{v1alpha1.LabelConnector: connector, v1alpha1.LabelConnection: id}}}
	a.Type = typ
	a.Time = metav1.NewMicroTime(time.Date(2026, 11, 22, 0, 0, sec, 0, time.UTC))
	a.Connection = &v1alpha1.ConnectionRef{ID: id, Peer: "192.0.2.1:1", Transport: "TCP"}
	a.Connector = connector
	return a
}

// Activity objects become entries in each process's order (their names carry it, not the
// order a list returns), with the run from the name; a connector the record lacks comes
// from the label.
func TestFromActivities(t *testing.T) {
	items := []v1alpha1.Activity{
		activity("redis-7f3a9c01-000010", "redis", "c-000001", "Ended", 9),
		activity("redis-0b1c2d3e-000002", "redis", "c-000001", "Input", 5),
		activity("redis-7f3a9c01-000002", "redis", "c-000001", "Connected", 1),
		activity("redis-7f3a9c01-000003", "redis", "c-000001", "Input", 1), // same time: the sequence orders
		activity("redis-0b1c2d3e-000001", "redis", "c-000001", "Connected", 4),
		activity("web-1-2-000001", "web-1", "c-000001", "Connected", 2), // a connector name with dashes
	}
	items[0].Connector = ""
	var got []string
	for _, e := range transcript.FromActivities(items) {
		got = append(got, e.Record.Connector+"/"+e.Run+"/"+string(e.Record.Type))
	}
	want := "redis/0b1c2d3e/Connected redis/0b1c2d3e/Input redis/7f3a9c01/Connected redis/7f3a9c01/Input redis/7f3a9c01/Ended web-1/2/Connected"
	if strings.Join(got, " ") != want {
		t.Errorf("entries %s\nwant    %s", strings.Join(got, " "), want)
	}
	cs := transcript.Conversations(transcript.FromActivities(items))
	if len(cs) != 3 || cs[0].Run != "7f3a9c01" || len(cs[0].Steps) != 3 || cs[1].Connector != "web-1" || cs[2].Run != "0b1c2d3e" {
		t.Errorf("conversations %+v", cs)
	}
}

// FromCluster selects a connector's Activities, and a connection's, by their labels.
func TestFromCluster(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	objs := []v1alpha1.Activity{
		activity("redis-7f3a9c01-000001", "redis", "c-000001", "Connected", 1),
		activity("redis-7f3a9c01-000002", "redis", "c-000002", "Connected", 2),
		activity("ftp-0b1c2d3e-000001", "ftp", "c-000001", "Connected", 3),
	}
	other := activity("redis-11111111-000001", "redis", "c-000001", "Connected", 4)
	other.Namespace = "elsewhere"
	b := fake.NewClientBuilder().WithScheme(scheme).WithObjects(&objs[0], &objs[1], &objs[2], &other)
	c := b.Build()
	for _, tc := range []struct{ connector, id, want string }{
		{"", "", "ftp-0b1c2d3e/c-000001 redis-7f3a9c01/c-000001 redis-7f3a9c01/c-000002"},
		{"redis", "", "redis-7f3a9c01/c-000001 redis-7f3a9c01/c-000002"},
		{"", "c-000001", "ftp-0b1c2d3e/c-000001 redis-7f3a9c01/c-000001"},
		{"redis", "c-000002", "redis-7f3a9c01/c-000002"},
	} {
		entries, err := transcript.FromCluster(context.Background(), c, "decoys", tc.connector, tc.id)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Record.Connector+"-"+e.Run+"/"+e.Record.Connection.ID)
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("connector %q id %q: %s, want %s", tc.connector, tc.id, strings.Join(got, " "), tc.want)
		}
	}
}
