package connector

import (
	"errors"
	"net"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/framing"
	"github.com/parley-dev/parley/rules"
)

// Framed TCP sockets (operation.framing, a rule's framing; docs/rules.md §12): the read
// loop cuts the stream into frames, one input each, instead of taking one read as one
// input. The socket's reader owns its Framer; a rule that switches the framing leaves the
// new one in the socket's next, which the reader takes before cutting another frame.

// framingOf is the framing a new TCP socket of p starts with: nil when neither the
// operation nor any rule frames (the plain read loop of Lope's model), Read when only
// rules switch to another framing later.
func framingOf(p *rules.Program) *rules.Framing {
	switch {
	case p.Transport != v1alpha1.TransportTCP:
		return nil
	case p.Framing != nil:
		return p.Framing
	case p.Reframes:
		return &rules.Framing{Type: v1alpha1.FramingRead, MaxFrameSize: p.MaxInputSize}
	}
	return nil
}

// frameError is a stream the framing cannot cut: a frame over maxFrameSize, or bytes that
// are not the framing's protocol.
type frameError struct{ err error }

func (e *frameError) Error() string { return e.err.Error() + "; socket closed" }
func (e *frameError) Unwrap() error { return e.err }

// frameReader reads a socket's frames.
type frameReader struct {
	s  *streamSocket
	fr *framing.Framer
	// readErr ends the stream once the frames held are taken.
	readErr error
}

func newFrameReader(s *streamSocket, f *rules.Framing) *frameReader {
	s.framing.Store(f)
	return &frameReader{s: s, fr: framing.New(f)}
}

// next returns the next input: a complete frame, or, once the peer has closed, what
// remains held. The input is valid until the next call. truncated marks a Read input
// that filled maxInputSize, as the plain read loop does. err is the read's error at the
// end of the stream, or a *frameError.
func (r *frameReader) next() (input []byte, truncated bool, err error) {
	for {
		// A switch is rare: look before taking it, so that a frame costs no atomic write.
		if r.s.next.Load() != nil {
			if f := r.s.next.Swap(nil); f != nil {
				r.fr.Switch(f)
				r.s.framing.Store(f)
			}
		}
		frame, err := r.fr.Next()
		if err != nil {
			return nil, false, &frameError{err}
		}
		if frame != nil {
			f := r.fr.Framing()
			return frame, f.Type == v1alpha1.FramingRead && len(frame) >= f.MaxFrameSize, nil
		}
		if r.readErr != nil {
			if rest := r.fr.Rest(); len(rest) > 0 {
				return rest, false, nil
			}
			return nil, false, r.readErr
		}
		n, err := r.s.conn.Read(r.fr.Space())
		r.fr.Fill(n)
		r.readErr = err
	}
}

// framedLoop turns r's frames into inputs until the socket closes.
func (c *Connector) framedLoop(cv *conversation, r *frameReader) {
	s := r.s
	for {
		input, truncated, err := r.next()
		if err == nil && s.closedByUs() {
			err = net.ErrClosed // a rule closed it: the frames still held go unanswered
		}
		if err != nil {
			var fe *frameError
			if errors.As(err, &fe) {
				cv.mu.Lock()
				cv.peerChanged(s)
				cv.recordError(fe.Error())
				cv.unlock()
			}
			_ = s.conn.Close()
			c.untrackSocket(s.raw)
			cv.socketClosed(s, err)
			return
		}
		cv = cv.input(s, input, truncated)
	}
}

// firstFrame reads the first input of a session-mode socket under p's framing, waiting at
// most interactionTimeout when set.
func firstFrame(p *rules.Program, s *streamSocket, f *rules.Framing) (*frameReader, []byte, bool, error) {
	r := newFrameReader(s, f)
	if t := p.InteractionTimeout; t > 0 {
		_ = s.conn.SetReadDeadline(time.Now().Add(t))
	}
	input, truncated, err := r.next()
	_ = s.conn.SetReadDeadline(time.Time{})
	return r, input, truncated, err
}

// switchFraming leaves the framing of the last of the fired rules that has one on s, the
// socket they answered, for its reader to cut the next input with.
func switchFraming(s socket, fired []*rules.Rule) {
	ss, ok := s.(*streamSocket)
	if !ok {
		return
	}
	for _, r := range fired {
		if r.Framing != nil {
			ss.next.Store(r.Framing)
		}
	}
}

// fillLengths writes each reply's size into its length field when the framing s reads
// under asks for it (fillReplies); a reply that cannot hold its size is noted on a.
func fillLengths(s socket, a *v1alpha1.ActivityRecord, wire []byte, ends []int) ([]byte, []int) {
	ss, ok := s.(*streamSocket)
	if !ok {
		return wire, ends
	}
	f := ss.framing.Load()
	if f == nil || f.Length == nil || !f.Length.FillReplies {
		return wire, ends
	}
	wire, ends, err := framing.Fill(f.Length, wire, ends)
	if err != nil {
		note(a, "fillReplies: "+err.Error())
	}
	return wire, ends
}
