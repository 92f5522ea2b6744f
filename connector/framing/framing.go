// Package framing cuts a TCP byte stream into frames, the inputs of a framed conversation
// (docs/rules.md §12). A Framer is fed bytes as they arrive and yields complete frames; it
// never holds more than its framing's maxFrameSize bytes, so a hostile peer cannot grow a
// connection's memory past that bound. It does no I/O: the connector's read loop reads into
// Space and asks Next for frames, so the framer is tested and fuzzed on its own.
package framing

import (
	"errors"
	"fmt"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/rules"
)

// Errors of a stream that cannot be cut; the errors Next returns wrap one of them.
var (
	// ErrTooLarge: a frame is longer than maxFrameSize.
	ErrTooLarge = errors.New("frame over maxFrameSize")
	// ErrMalformed: the bytes cannot be the framing's protocol (a RESP array element that
	// is not a bulk string, an HTTP chunk size that is not hex...).
	ErrMalformed = errors.New("malformed frame")
)

// initialBuffer is the buffer a Framer starts with (less when maxFrameSize is smaller); it
// grows by doubling, or straight to a frame's announced size, up to maxFrameSize.
const initialBuffer = 4096

// cutter finds the end of the first frame of b, which starts at a frame boundary. It
// returns the frame's length n > 0, or n = 0 and need, how many bytes b must hold before
// trying again (more than len(b)). A cutter may remember how far it has looked, until it
// returns a frame or reset is called.
type cutter interface {
	cut(b []byte) (n, need int, err error)
	reset()
}

// Framer cuts a byte stream into frames. It is not safe for concurrent use: one reader
// owns it.
type Framer struct {
	framing *rules.Framing
	cut     cutter
	max     int
	// buf[start:end] are the bytes received and not yet cut into frames.
	buf        []byte
	start, end int
	// need: the pending bytes the cutter asked for before it is worth trying again.
	need int
}

// New returns a Framer for f (its MaxFrameSize must be at least 1).
func New(f *rules.Framing) *Framer {
	fr := &Framer{}
	fr.Switch(f)
	return fr
}

// Framing is the framing frames are cut under now.
func (fr *Framer) Framing() *rules.Framing { return fr.framing }

// Switch cuts the bytes buffered and every later byte under f: a rule's framing applies
// from the next frame on.
func (fr *Framer) Switch(f *rules.Framing) {
	fr.framing, fr.cut, fr.max, fr.need = f, cutterFor(f), f.MaxFrameSize, 0
	pending := fr.end - fr.start
	if len(fr.buf) > fr.max && pending <= fr.max {
		// Give back what a larger bound had let the buffer grow to.
		buf := make([]byte, max(min(initialBuffer, fr.max), pending))
		fr.end = copy(buf, fr.buf[fr.start:fr.end])
		fr.buf, fr.start = buf, 0
	}
}

// Space returns where the next read goes: never empty once Next has returned no frame and
// no error, and never so long that the bytes held could pass maxFrameSize.
func (fr *Framer) Space() []byte {
	if fr.start == fr.end {
		fr.start, fr.end = 0, 0
	}
	if fr.end == len(fr.buf) && fr.start > 0 {
		fr.end = copy(fr.buf, fr.buf[fr.start:fr.end])
		fr.start = 0
	}
	if fr.end == len(fr.buf) && len(fr.buf) < fr.max {
		size := min(max(2*len(fr.buf), fr.need, initialBuffer), fr.max)
		buf := make([]byte, size)
		copy(buf, fr.buf[:fr.end])
		fr.buf = buf
	}
	room := fr.buf[fr.end:]
	if limit := fr.max - (fr.end - fr.start); len(room) > limit {
		room = room[:max(limit, 0)]
	}
	return room
}

// Fill says n bytes were read into the slice Space returned.
func (fr *Framer) Fill(n int) { fr.end += n }

// Write copies p in, as reads into Space would, as far as maxFrameSize lets it, and
// returns how much of p fit. It is for callers that hold bytes already (tests, the fuzz
// target); the connector reads into Space.
func (fr *Framer) Write(p []byte) int {
	total := 0
	for len(p) > 0 {
		space := fr.Space()
		if len(space) == 0 {
			break
		}
		n := copy(space, p)
		fr.Fill(n)
		p, total = p[n:], total+n
	}
	return total
}

// Next returns the next complete frame, or nil when more bytes are needed. The frame is a
// view of the framer's buffer, valid until the next call of Space, Write or Switch. An
// error (wrapping ErrTooLarge or ErrMalformed) means the stream cannot be cut further.
func (fr *Framer) Next() ([]byte, error) {
	pending := fr.end - fr.start
	if pending == 0 || pending < fr.need {
		return nil, nil
	}
	n, need, err := fr.cut.cut(fr.buf[fr.start:fr.end])
	if err != nil {
		return nil, fmt.Errorf("%s framing: %w", fr.framing.Type, err)
	}
	if n > 0 {
		if n > fr.max {
			return nil, fmt.Errorf("%s framing: %w: a frame of %d bytes, over %d", fr.framing.Type, ErrTooLarge, n, fr.max)
		}
		frame := fr.buf[fr.start : fr.start+n : fr.start+n]
		fr.start += n
		fr.need = 0
		return frame, nil
	}
	if need > fr.max {
		return nil, fmt.Errorf("%s framing: %w: a frame of at least %d bytes, over %d", fr.framing.Type, ErrTooLarge, need, fr.max)
	}
	if pending >= fr.max {
		return nil, fmt.Errorf("%s framing: %w: %d bytes without a complete frame", fr.framing.Type, ErrTooLarge, pending)
	}
	fr.need = need
	return nil, nil
}

// Rest returns the bytes held that make no complete frame (the last input when the peer
// closes) and forgets them.
func (fr *Framer) Rest() []byte {
	rest := fr.buf[fr.start:fr.end]
	fr.start, fr.end, fr.need = 0, 0, 0
	fr.cut.reset()
	return rest
}

// Buffered is the number of bytes held that are not yet part of a frame returned.
func (fr *Framer) Buffered() int { return fr.end - fr.start }

// Held is the size of the framer's buffer: the memory it holds, at most maxFrameSize (or,
// after Switch to a smaller bound, what was buffered then).
func (fr *Framer) Held() int { return len(fr.buf) }

func cutterFor(f *rules.Framing) cutter {
	switch f.Type {
	case v1alpha1.FramingDelimiter:
		return &delimiterCut{delim: f.Delimiter}
	case v1alpha1.FramingLength:
		if f.Length.MQTT {
			return mqttCut{l: f.Length}
		}
		return fixedCut{l: f.Length}
	case v1alpha1.FramingRESP:
		return &respCut{}
	case v1alpha1.FramingHTTP:
		return &httpCut{}
	default:
		return readCut{max: f.MaxFrameSize}
	}
}

// readCut is Read framing: every byte held is one frame, as one read is one input.
type readCut struct{ max int }

func (c readCut) cut(b []byte) (int, int, error) { return min(len(b), c.max), 0, nil }
func (readCut) reset()                           {}
