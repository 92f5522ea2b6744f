package v1alpha1

import "encoding/base64"

// activityRecordOverhead is what a record costs beyond the bytes it carries: the struct, its
// pointers, its small strings (ids, peer, type, rules reference) and the allocator's rounding.
const activityRecordOverhead = 512

// ApproxSize estimates the bytes a record holds in memory: the peer's and our bytes it
// carries (input and output text and base64, message, captures, memory) plus a fixed cost.
// The bounded queues of the activity path (the connector's register and replay buffer, the
// engine's write queue) count it against their byte budgets: it costs a few additions, no
// allocation, and is never below what the large fields hold.
func (a *ActivityRecord) ApproxSize() int {
	n := activityRecordOverhead + len(a.Message)
	if in := a.Input; in != nil {
		n += len(in.Text) + len(in.Base64) + len(in.Preview)
		if in.Base64 == "" {
			n += base64.StdEncoding.EncodedLen(len(in.Text)) // the base64 the connector's register may fill in
		}
	}
	if out := a.Output; out != nil {
		n += len(out.Text) + len(out.Base64)
		if out.Base64 == "" {
			n += base64.StdEncoding.EncodedLen(len(out.Text)) // as for the input
		}
	}
	for _, c := range a.Captures {
		n += len(c.Variable) + len(c.Value) + 32
	}
	if m := a.Memory; m != nil {
		for k, v := range m.Connection {
			n += len(k) + len(v) + 32
		}
		for k, v := range m.Global {
			n += len(k) + len(v) + 32
		}
	}
	return n
}
