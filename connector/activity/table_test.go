package activity_test

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/activity"
)

// tableConversation is a fixed conversation of two connectors: a text decoy whose input
// is cut inside a multi-byte character, and a binary one.
func tableConversation() []*v1alpha1.ActivityRecord {
	at := func(us int) metav1.MicroTime {
		return metav1.NewMicroTime(time.Date(2026, 12, 6, 10, 0, 0, us*1000, time.UTC))
	}
	conn := &v1alpha1.ConnectionRef{ID: "c-000001", Peer: "127.0.0.1:40000", Transport: v1alpha1.TransportTCP}
	long := "AUTH " + strings.Repeat("é", 30) + "\r\n"
	mqtt := []byte{0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00}
	return []*v1alpha1.ActivityRecord{
		{Connector: "redis", Time: at(1), Type: v1alpha1.ActivityConnected, Connection: conn},
		{Connector: "redis", Time: at(2), Type: v1alpha1.ActivityInput, Connection: conn, Alert: true,
			Input:    &v1alpha1.InputRecord{Text: long, Base64: base64.StdEncoding.EncodeToString([]byte(long)), Bytes: int32(len(long))},
			Rules:    &v1alpha1.RulesRecord{Executed: []int32{2}, Scheduled: []int32{20}},
			Output:   &v1alpha1.OutputRecord{Bytes: 5},
			Captures: []v1alpha1.CaptureRecord{{Rule: 2, Variable: "password", Value: "ééé"}},
			Memory:   &v1alpha1.MemorySnapshot{Connection: map[string]string{"user": "admin"}, Global: map[string]string{"hits": "4"}}},
		{Connector: "mqtt", Time: at(3), Type: v1alpha1.ActivityInput, Connection: conn,
			Input: &v1alpha1.InputRecord{Text: string(mqtt), Base64: base64.StdEncoding.EncodeToString(mqtt), Bytes: int32(len(mqtt))},
			Rules: &v1alpha1.RulesRecord{Basic: "default"}},
		{Connector: "mqtt", Time: at(3), Type: v1alpha1.ActivityInput, Connection: conn,
			Input: &v1alpha1.InputRecord{Text: "PING\r\n", Base64: "UElORw0K", Bytes: 6}, Rules: &v1alpha1.RulesRecord{Basic: "default"}},
		{Connector: "redis", Time: at(4), Type: v1alpha1.ActivityAsync, Connection: conn, Rules: &v1alpha1.RulesRecord{Async: []int32{20}},
			Memory: &v1alpha1.MemorySnapshot{Connection: map[string]string{"user": "admin"}, Global: map[string]string{"hits": "5"}}},
		{Connector: "redis", Time: at(5), Type: v1alpha1.ActivityEnded, Connection: conn, Message: "peer closed the connection"},
	}
}

func TestTableSinkByteForByte(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    activity.TableOptions
		want string
	}{
		{"one connector", activity.TableOptions{Binary: map[string]bool{"mqtt": true}}, `TIME            TYPE             CONN      PEER                   RULES          DETAIL
10:00:00.000001 Connected        c-000001  127.0.0.1:40000        -              
10:00:00.000002 Input !          c-000001  127.0.0.1:40000        2 →20          in="AUTH éééééééééééééééééééé…" out=5B password="ééé" memory{user="admin" hits="4"}
10:00:00.000003 Input            c-000001  127.0.0.1:40000        default        in=hex:100c00044d5154540402003c0000
10:00:00.000003 Input            c-000001  127.0.0.1:40000        default        in="PING\r\n"
10:00:00.000004 Async            c-000001  127.0.0.1:40000        a20            memory{hits="5"}
10:00:00.000005 Ended            c-000001  127.0.0.1:40000        -              peer closed the connection
`},
		{"several connectors, colour", activity.TableOptions{ConnectorColumn: true, Color: true}, `TIME            TYPE             CONNECTOR        CONN      PEER                   RULES          DETAIL
10:00:00.000001 Connected        redis            c-000001  127.0.0.1:40000        -              
` + "\x1b[1;31m" + `10:00:00.000002 Input !          redis            c-000001  127.0.0.1:40000        2 →20          in="AUTH éééééééééééééééééééé…" out=5B password="ééé" memory{user="admin" hits="4"}` + "\x1b[0m" + `
10:00:00.000003 Input            mqtt             c-000001  127.0.0.1:40000        default        in="\x10\f\x00\x04MQTT\x04\x02\x00<\x00\x00"
10:00:00.000003 Input            mqtt             c-000001  127.0.0.1:40000        default        in="PING\r\n"
10:00:00.000004 Async            redis            c-000001  127.0.0.1:40000        a20            memory{hits="5"}
10:00:00.000005 Ended            redis            c-000001  127.0.0.1:40000        -              peer closed the connection
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := activity.NewTableSink(&buf, tc.o).Write(tableConversation()); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestShortInputCutsWholeCharactersAndEscapes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"PING\r\n", 48, `PING\r\n`},
		{"PING\r\n", 8, `PING\r\n`},      // fits exactly
		{"PING\r\nX", 8, `PING…`},        // \r would leave no room for the ellipsis
		{"ab\"cd", 6, `ab\"cd`},          // quotes escaped as strconv.Quote does
		{"日本語テキスト", 10, "日本…"},           // never half a character
		{"\xff\xfeok", 20, `\xff\xfeok`}, // invalid UTF-8 as Go escapes it
		{"a'b", 10, "a'b"},
	} {
		if got := activity.ShortInput(&v1alpha1.InputRecord{Text: tc.in}, tc.n); got != tc.want || len(got) > tc.n {
			t.Errorf("ShortInput(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// An input without base64 holds its bytes as its text (utf-8: the register leaves it so for
// the table) and shows in hex from them where the table shows its connector in hex: one
// whose rules were reloaded from binary to utf-8.
func TestTableShowsATextOnlyInputInHex(t *testing.T) {
	var out bytes.Buffer
	s := activity.NewTableSink(&out, activity.TableOptions{Binary: map[string]bool{"x": true}})
	err := s.Write([]*v1alpha1.ActivityRecord{{
		Connector: "x", Time: metav1.NewMicroTime(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)), Type: v1alpha1.ActivityInput,
		Connection: &v1alpha1.ConnectionRef{ID: "c-000001", Peer: "127.0.0.1:40000", Transport: v1alpha1.TransportTCP},
		Input:      &v1alpha1.InputRecord{Text: "\x00\x01AB", Bytes: 4},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "in=hex:00014142") {
		t.Errorf("table:\n%s", out.String())
	}
}
