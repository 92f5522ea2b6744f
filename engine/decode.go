package engine

import (
	"encoding/json"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/internal/activityjson"
)

// Decoding an activity's JSON with encoding/json is most of what the engine spends on an
// activity it does not write as an object (docs/performance.md §10). For those, it reads
// only the head (activityjson.DecodeHead), and the sinks get the JSON as the connector
// sent it.

// incoming is one activity of a batch as the engine reads it.
type incoming struct {
	rec *v1alpha1.ActivityRecord
	// partial: rec holds only what activityjson.DecodeHead reads.
	partial bool
	// raw is the activity's JSON for the sinks to send as is; nil: they encode rec.
	raw []byte
	// fired counts the rules it ran (rules.executed and rules.async).
	fired int
}

// decode reads one activity: only its head when the connector's record policy writes
// only alerts, or nothing, and it is neither an alert nor a lifecycle activity (the head
// then says all the engine does with it); else the whole of it.
func (in *incoming) decode(raw []byte, policy v1alpha1.RecordPolicy) error {
	if policy == v1alpha1.RecordNone || policy == v1alpha1.RecordAlerts {
		h := &v1alpha1.ActivityRecord{}
		if fired, ok := activityjson.DecodeHead(raw, h); ok {
			in.raw, in.fired = raw, fired
			if !h.Alert && h.Type != v1alpha1.ActivityConnectorStarted && h.Type != v1alpha1.ActivityConnectorStopped {
				in.rec, in.partial = h, true
				return nil
			}
		}
	}
	rec := &v1alpha1.ActivityRecord{}
	if err := json.Unmarshal(raw, rec); err != nil {
		return err
	}
	in.rec = rec
	if rec.Rules != nil {
		in.fired = len(rec.Rules.Executed) + len(rec.Rules.Async)
	}
	return nil
}
