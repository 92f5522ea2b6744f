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
// reconnectBefore flushes what came before it) is recorded as one (recorded: with utf-8 the
// base64 is the register's to fill in).
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
	if before > 0 {
		// Rare: join what the record holds with the new part, to decode them as one. The
		// bytes are the text where no base64 was made (utf-8: recorded).
		held := []byte(o.Text)
		if o.Base64 != "" {
			held, _ = base64.StdEncoding.DecodeString(o.Base64)
		}
		b = append(held, b...)
	}
	if limit := cv.prog.MaxInputSize; len(b) > limit {
		b, o.Truncated = b[:limit], true
	}
	o.Text, o.Base64 = cv.recorded(b)
}
