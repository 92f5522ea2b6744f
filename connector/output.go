package connector

import (
	"encoding/base64"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// replied returns a's output record, made on first use: an activity that replies records an
// output even when nothing could be written.
func replied(a *v1alpha1.ActivityRecord) *v1alpha1.OutputRecord {
	if a.Output == nil {
		a.Output = &v1alpha1.OutputRecord{}
	}
	return a.Output
}

// wrote records on a the bytes b just written for it: their count and, up to maxInputSize
// (the bound the conversation's inputs have), the bytes in base64 and their text decoded as
// inputs are; truncated when more was written. A reply written in several parts (a rule's
// reconnectBefore flushes what came before it) is recorded as one. With utf-8, whose text is
// the bytes, the base64 is left to the register, as an input's is (recordInput).
func (cv *conversation) wrote(a *v1alpha1.ActivityRecord, b []byte) {
	o := replied(a)
	if len(b) == 0 {
		return
	}
	before := o.Bytes
	o.Bytes += int32(len(b))
	if o.Truncated {
		return
	}
	utf8Text := cv.textIsBytes()
	if before > 0 {
		// Rare: join what the record holds with the new part, to decode them as one.
		var held []byte
		if utf8Text {
			held = []byte(o.Text)
		} else {
			held, _ = base64.StdEncoding.DecodeString(o.Base64)
		}
		b = append(held, b...)
	}
	if limit := cv.prog.MaxInputSize; len(b) > limit {
		b, o.Truncated = b[:limit], true
	}
	if utf8Text {
		o.Text = string(b)
		return
	}
	o.Text, o.Base64 = cv.textAndBase64(b)
}
