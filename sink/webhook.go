package sink

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/evidence"
)

// SignatureHeader carries a JSON webhook body's HMAC-SHA256 signature, "sha256=" and hex,
// computed with the sink's key over the exact body bytes (as GitHub's webhooks do).
const SignatureHeader = "X-Parley-Signature"

// Webhook posts batches to an HTTP(S) URL.
type Webhook struct {
	url    string
	format v1alpha1.WebhookFormat
	key    []byte
	client *http.Client
}

// NewWebhook posts to url in format (JSON when empty), signing JSON bodies with key when
// it is set; tlsConfig (nil: the system's) verifies an https server.
func NewWebhook(url string, format v1alpha1.WebhookFormat, key []byte, tlsConfig *tls.Config) *Webhook {
	if format == "" {
		format = v1alpha1.WebhookJSON
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConfig
	return &Webhook{url: url, format: format, key: key, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// keyedRecord is an activity as a webhook sends it: an object with its name in metadata,
// as `kubectl get activity -o json` shows it, so that parley verify reads it too.
type keyedRecord struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	*v1alpha1.ActivityRecord `json:",inline"`
}

// keyedCheckpoint is a checkpoint as a webhook sends it: {"metadata": {"name": KEY},
// "checkpoint": {...}}, which parley verify reads as a checkpoint line.
type keyedCheckpoint struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Checkpoint *evidence.Checkpoint `json:"checkpoint"`
}

// JSONBatch is the body of a JSON webhook: {"activities": [...]}, and the checkpoints of
// their chains, when the engine signs them, in "checkpoints": [...].
func JSONBatch(batch []Item) ([]byte, error) {
	if hasRaw(batch) {
		return rawJSONBatch(batch)
	}
	out := struct {
		Activities  []keyedRecord     `json:"activities"`
		Checkpoints []keyedCheckpoint `json:"checkpoints,omitempty"`
	}{Activities: make([]keyedRecord, 0, len(batch))}
	for _, it := range batch {
		if it.Checkpoint != nil {
			var c keyedCheckpoint
			c.Metadata.Name, c.Checkpoint = it.Key, it.Checkpoint
			out.Checkpoints = append(out.Checkpoints, c)
			continue
		}
		var a keyedRecord
		a.Metadata.Name, a.ActivityRecord = it.Key, it.Record
		out.Activities = append(out.Activities, a)
	}
	return json.Marshal(out)
}

func hasRaw(batch []Item) bool {
	for i := range batch {
		if batch[i].Raw != nil {
			return true
		}
	}
	return false
}

// rawJSONBatch is JSONBatch written by hand around the activities' own JSON: each element
// is {"metadata":{"name":KEY}, then the activity's fields as its connector sent them.
func rawJSONBatch(batch []Item) ([]byte, error) {
	size := 32
	for i := range batch {
		size += len(batch[i].Raw) + len(batch[i].Key) + 32
	}
	b := make([]byte, 0, size)
	b = append(b, `{"activities":[`...)
	first := true
	var cps []keyedCheckpoint
	for i := range batch {
		it := &batch[i]
		if it.Checkpoint != nil {
			var c keyedCheckpoint
			c.Metadata.Name, c.Checkpoint = it.Key, it.Checkpoint
			cps = append(cps, c)
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		name, err := json.Marshal(it.Key)
		if err != nil {
			return nil, err
		}
		b = append(b, `{"metadata":{"name":`...)
		b = append(b, name...)
		b = append(b, '}')
		raw := bytes.TrimSpace(it.Raw)
		if len(raw) < 2 {
			if raw, err = json.Marshal(it.Record); err != nil {
				return nil, err
			}
		}
		// raw is an object: {} adds nothing, else its fields follow the metadata's.
		if body := bytes.TrimSpace(raw[1 : len(raw)-1]); len(body) > 0 {
			b = append(b, ',')
			b = append(b, body...)
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	if len(cps) > 0 {
		c, err := json.Marshal(cps)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"checkpoints":`...)
		b = append(b, c...)
	}
	return append(b, '}'), nil
}

// Sign is the SignatureHeader value of body with key.
func Sign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Deliver implements Destination.
func (w *Webhook) Deliver(ctx context.Context, batch []Item) error {
	var body []byte
	var err error
	if w.format == v1alpha1.WebhookSlack {
		body, err = SlackMessage(batch)
	} else {
		body, err = JSONBatch(batch)
	}
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if w.format == v1alpha1.WebhookJSON && len(w.key) > 0 {
		req.Header.Set(SignatureHeader, Sign(w.key, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// Close implements Destination.
func (w *Webhook) Close() error {
	w.client.CloseIdleConnections()
	return nil
}

// SlackMessage is an incoming-webhook message: one line per activity, alerts first-class:
// ":rotating_light: *redis-decoy* Input from 203.0.113.9:51122 (rules 3) `AUTH admin…`".
func SlackMessage(batch []Item) ([]byte, error) {
	var b strings.Builder
	for _, it := range batch {
		if it.Record == nil {
			continue // a checkpoint is for parley verify, not for people
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(Summary(it.Activity()))
	}
	return json.Marshal(map[string]string{"text": b.String()})
}

// Summary is one readable line for people (Slack, e-mail): alert mark, connector, type,
// peer, rules, input.
func Summary(a *v1alpha1.ActivityRecord) string {
	var b strings.Builder
	if a.Alert {
		b.WriteString(":rotating_light: ALERT ")
	}
	fmt.Fprintf(&b, "*%s* %s", slackEscape(a.Connector), a.Type)
	if c := a.Connection; c != nil {
		fmt.Fprintf(&b, " from %s", slackEscape(c.Peer))
	}
	if r := a.Rules; r != nil && len(r.Executed) > 0 {
		ids := make([]string, len(r.Executed))
		for i, id := range r.Executed {
			ids[i] = strconv.Itoa(int(id))
		}
		fmt.Fprintf(&b, " (rules %s)", strings.Join(ids, " "))
	}
	if in := a.Input; in != nil {
		q := strconv.QuoteToASCII(in.Text)
		if len(q) > 82 {
			q = q[:80] + `…"`
		}
		fmt.Fprintf(&b, " input %s", slackEscape(q))
	}
	if a.Message != "" {
		fmt.Fprintf(&b, ": %s", slackEscape(a.Message))
	}
	return b.String()
}

// slackEscape escapes what Slack's mrkdwn reads as markup (its documented three).
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
