package framing_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/framing"
	"github.com/parley-dev/parley/rules"
)

// fuzzFraming picks a framing from two bytes of the fuzzer's input: which type and shape,
// and a small bound, so inputs reach it.
func fuzzFraming(kind, bound uint8) *rules.Framing {
	max := 8 + int(bound)*4
	switch kind % 9 {
	case 0:
		return delim("\r\n", max)
	case 1:
		return delim("\r\n.\r\n", max)
	case 2:
		return length(rules.LengthField{Size: 2, Adjust: 2}, max)
	case 3:
		return length(rules.LengthField{Offset: 1, Size: 4, Little: true, Adjust: -3}, max)
	case 4:
		return length(rules.LengthField{Size: 8}, max)
	case 5:
		return length(rules.LengthField{Offset: 1, MQTT: true}, max)
	case 6:
		return typ(v1alpha1.FramingRESP, max)
	case 7:
		return typ(v1alpha1.FramingHTTP, max)
	default:
		return delim("\n", max)
	}
}

// FuzzFramer: hostile streams never panic a framer, never make it hold more than its
// bound, and cut the same frames (and stop on the same kind of error) whether the bytes
// arrive one at a time or all at once.
func FuzzFramer(f *testing.F) {
	f.Add(uint8(0), uint8(10), []byte("PING\r\nECHO\r\n"))
	f.Add(uint8(5), uint8(40), []byte("\x10\x02ab\x30\x05\x00\x01tzz\xe0\x00"))
	f.Add(uint8(6), uint8(20), []byte("*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n"))
	f.Add(uint8(7), uint8(60), []byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, kind, bound uint8, stream []byte) {
		fr := fuzzFraming(kind, bound)
		whole, wholeRest, wholeErr := cut(t, fr, stream, 0)
		single, singleRest, singleErr := cut(t, fr, stream, 1)
		if !slices.Equal(whole, single) || wholeRest != singleRest {
			t.Fatalf("all at once: %q rest %q; byte by byte: %q rest %q", whole, wholeRest, single, singleRest)
		}
		if kindOf(wholeErr) != kindOf(singleErr) {
			t.Fatalf("all at once: %v; byte by byte: %v", wholeErr, singleErr)
		}
		for _, frame := range whole {
			if len(frame) == 0 || len(frame) > fr.MaxFrameSize {
				t.Fatalf("frame of %d bytes under a bound of %d", len(frame), fr.MaxFrameSize)
			}
		}
	})
}

func kindOf(err error) string {
	switch {
	case err == nil:
		return "none"
	case errors.Is(err, framing.ErrTooLarge):
		return "too large"
	case errors.Is(err, framing.ErrMalformed):
		return "malformed"
	}
	return "other: " + err.Error()
}
