package engine

import (
	"encoding/base64"
	"maps"
	"strings"
	"testing"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// An Activity object keeps at most maxObjectPayload bytes of an input's and an output's text
// and base64, cut on whole characters and base64 quanta and marked truncated; the counts stay.
func TestActivityObjectFitsLargePayloads(t *testing.T) {
	ec := &v1alpha1.ExternalConnector{}
	ec.Name = "decoy"
	big := []byte(strings.Repeat("é", maxObjectPayload)) // 2 bytes a character
	bigText, bigB64 := string(big), base64.StdEncoding.EncodeToString(big)
	rec := &v1alpha1.ActivityRecord{
		Type:   v1alpha1.ActivityInput,
		Input:  &v1alpha1.InputRecord{Text: bigText, Base64: bigB64, Bytes: int32(len(big))},
		Output: &v1alpha1.OutputRecord{Bytes: int32(len(big)), Text: bigText, Base64: bigB64},
	}
	act := activityObject(ec, ActivityName(ec.Name, "0a1b2c3d", 1), rec)
	wantText := bigText[:maxObjectPayload-1] // the last whole character
	raw, err := base64.StdEncoding.DecodeString(act.Input.Base64)
	if err != nil || string(raw) != string(big[:maxObjectPayload]) {
		t.Errorf("input base64 holds %d bytes (%v), want the first %d", len(raw), err, maxObjectPayload)
	}
	if in := act.Input; in.Text != wantText || !in.Truncated || in.Bytes != int32(len(big)) || in.Preview == "" {
		t.Errorf("input: %d bytes of text, truncated %v, bytes %d, preview %q", len(in.Text), in.Truncated, in.Bytes, in.Preview)
	}
	if o := act.Output; o.Text != wantText || o.Base64 != act.Input.Base64 || !o.Truncated || o.Bytes != int32(len(big)) {
		t.Errorf("output: %d bytes of text, %d of base64, truncated %v, bytes %d", len(o.Text), len(o.Base64), o.Truncated, o.Bytes)
	}

	if rec.Input.Text != bigText || rec.Input.Preview != "" || rec.Output.Base64 != bigB64 || rec.Output.Truncated {
		t.Error("the record changed: the JSON log and the sinks get it whole")
	}

	small := &v1alpha1.ActivityRecord{Type: v1alpha1.ActivityInput,
		Input:  &v1alpha1.InputRecord{Text: "PING\r\n", Base64: "UElORw0K", Bytes: 6},
		Output: &v1alpha1.OutputRecord{Bytes: 7, Text: "+PONG\r\n", Base64: "K1BPTkcNCg=="}}
	act = activityObject(ec, ActivityName(ec.Name, "0a1b2c3d", 2), small)
	if *act.Output != (v1alpha1.OutputRecord{Bytes: 7, Text: "+PONG\r\n", Base64: "K1BPTkcNCg=="}) || act.Input.Truncated || act.Input.Text != "PING\r\n" {
		t.Errorf("small payloads changed: %+v %+v", act.Input, act.Output)
	}
}

// An Activity is owned by its connector, and so deleted with it, unless the connector keeps
// its Activities on delete; either way it is labeled with its connector, type and alert.
func TestActivityObjectOwnerAndLabels(t *testing.T) {
	ec := &v1alpha1.ExternalConnector{}
	ec.Name, ec.Namespace, ec.UID = "decoy", "ns", "uid-1"
	rec := &v1alpha1.ActivityRecord{Type: v1alpha1.ActivityInput, Alert: true, Connection: &v1alpha1.ConnectionRef{ID: "c-000001"}}
	act := activityObject(ec, ActivityName(ec.Name, "0a1b2c3d", 1), rec)
	if len(act.OwnerReferences) != 1 || act.OwnerReferences[0].UID != "uid-1" || act.OwnerReferences[0].Kind != "ExternalConnector" {
		t.Errorf("owners %+v", act.OwnerReferences)
	}
	want := map[string]string{v1alpha1.LabelConnector: "decoy", v1alpha1.LabelType: "Input", v1alpha1.LabelAlert: "true", v1alpha1.LabelConnection: "c-000001"}
	if !maps.Equal(act.Labels, want) {
		t.Errorf("labels %v, want %v", act.Labels, want)
	}
	ec.Spec.Activities.KeepOnDelete = true
	if act := activityObject(ec, ActivityName(ec.Name, "0a1b2c3d", 2), rec); len(act.OwnerReferences) != 0 {
		t.Errorf("kept on delete, yet owned: %+v", act.OwnerReferences)
	}
}
