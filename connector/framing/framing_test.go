package framing_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/parley-dev/parley/api/v1alpha1"
	"github.com/parley-dev/parley/connector/framing"
	"github.com/parley-dev/parley/rules"
)

func delim(d string, max int) *rules.Framing {
	return &rules.Framing{Type: v1alpha1.FramingDelimiter, Delimiter: []byte(d), MaxFrameSize: max}
}

func length(l rules.LengthField, max int) *rules.Framing {
	return &rules.Framing{Type: v1alpha1.FramingLength, Length: &l, MaxFrameSize: max}
}

func typ(t v1alpha1.FramingType, max int) *rules.Framing {
	return &rules.Framing{Type: t, MaxFrameSize: max}
}

// cut feeds stream to a new framer in pieces of step bytes (0: as much as fits at once)
// and returns the frames, what remains, and the error that stopped it, if any.
func cut(t testing.TB, f *rules.Framing, stream []byte, step int) (frames []string, rest string, err error) {
	fr := framing.New(f)
	for {
		for {
			frame, err := fr.Next()
			if err != nil {
				return frames, "", err
			}
			if frame == nil {
				break
			}
			frames = append(frames, string(frame))
		}
		if fr.Held() > f.MaxFrameSize || fr.Buffered() > f.MaxFrameSize {
			t.Fatalf("framer holds %d bytes (%d buffered), over maxFrameSize %d", fr.Held(), fr.Buffered(), f.MaxFrameSize)
		}
		if len(stream) == 0 {
			return frames, string(fr.Rest()), nil
		}
		space := fr.Space()
		if len(space) == 0 {
			t.Fatal("Space is empty after Next asked for more bytes")
		}
		n := len(space)
		if step > 0 {
			n = min(n, step)
		}
		n = copy(space[:n], stream)
		fr.Fill(n)
		stream = stream[n:]
	}
}

func TestFramers(t *testing.T) {
	mqttPublish := func(payload string) string { // PUBLISH, QoS 0, topic "t"
		body := "\x00\x01t" + payload
		var rl []byte
		for v := len(body); ; {
			b := byte(v & 0x7f)
			v >>= 7
			if v > 0 {
				b |= 0x80
			}
			rl = append(rl, b)
			if v == 0 {
				break
			}
		}
		return "\x30" + string(rl) + body
	}
	big := strings.Repeat("x", 300)
	cases := []struct {
		name    string
		f       *rules.Framing
		stream  string
		frames  []string
		rest    string
		errKind error
	}{
		{"delimiter CRLF", delim("\r\n", 100), "PING\r\nECHO a\r\nPART", []string{"PING\r\n", "ECHO a\r\n"}, "PART", nil},
		{"delimiter SMTP end of data", delim("\r\n.\r\n", 100), "Subject: x\r\n\r\nbody\r\n..dot\r\n.\r\nQUIT\r\n", []string{"Subject: x\r\n\r\nbody\r\n..dot\r\n.\r\n"}, "QUIT\r\n", nil},
		{"delimiter binary", delim("\x00\x01", 100), "a\x00b\x00\x01c\x00\x01", []string{"a\x00b\x00\x01", "c\x00\x01"}, "", nil},
		{"delimiter over the bound", delim("\n", 8), "12345678\n", nil, "", framing.ErrTooLarge},
		{"delimiter fits the bound exactly", delim("\n", 8), "1234567\n", []string{"1234567\n"}, "", nil},
		{"length 2 big-endian, DNS over TCP", length(rules.LengthField{Size: 2, Adjust: 2}, 100), "\x00\x03abc\x00\x01d\x00", []string{"\x00\x03abc", "\x00\x01d"}, "\x00", nil},
		{"length 4 little-endian at offset 1, whole frame", length(rules.LengthField{Offset: 1, Size: 4, Little: true}, 100), "T\x07\x00\x00\x00xyT\x05\x00\x00\x00", []string{"T\x07\x00\x00\x00xy", "T\x05\x00\x00\x00"}, "", nil},
		{"length 1", length(rules.LengthField{Size: 1, Adjust: 1}, 100), "\x00\x02ab", []string{"\x00", "\x02ab"}, "", nil},
		{"length 8", length(rules.LengthField{Size: 8}, 100), "\x00\x00\x00\x00\x00\x00\x00\x09z", []string{"\x00\x00\x00\x00\x00\x00\x00\x09z"}, "", nil},
		{"length over the bound", length(rules.LengthField{Size: 2}, 100), "\x00\x65", nil, "", framing.ErrTooLarge},
		{"length 8 overflow", length(rules.LengthField{Size: 8}, 100), "\xff\xff\xff\xff\xff\xff\xff\xff", nil, "", framing.ErrTooLarge},
		{"length shorter than its header", length(rules.LengthField{Size: 2}, 100), "\x00\x01", nil, "", framing.ErrMalformed},
		{"MQTT", length(rules.LengthField{Offset: 1, MQTT: true}, 1000), "\x10\x02ab" + mqttPublish("hi") + mqttPublish(big) + "\xe0\x00",
			[]string{"\x10\x02ab", mqttPublish("hi"), mqttPublish(big), "\xe0\x00"}, "", nil},
		{"MQTT over the bound", length(rules.LengthField{Offset: 1, MQTT: true}, 100), mqttPublish(big), nil, "", framing.ErrTooLarge},
		{"MQTT integer of 5 bytes", length(rules.LengthField{Offset: 1, MQTT: true}, 100), "\x30\xff\xff\xff\xff\x01", nil, "", framing.ErrMalformed},
		{"RESP pipelined", typ(v1alpha1.FramingRESP, 100), "*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\nPING\r\nINFO\n*0\r\n*2\r\n$3\r\nGET",
			[]string{"*1\r\n$4\r\nPING\r\n", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n", "PING\r\n", "INFO\n", "*0\r\n"}, "*2\r\n$3\r\nGET", nil},
		{"RESP binary-safe bulk", typ(v1alpha1.FramingRESP, 100), "*2\r\n$3\r\nSET\r\n$5\r\n*\r\n$\n\r\n", []string{"*2\r\n$3\r\nSET\r\n$5\r\n*\r\n$\n\r\n"}, "", nil},
		{"RESP element not bulk", typ(v1alpha1.FramingRESP, 100), "*1\r\n:1\r\n", nil, "", framing.ErrMalformed},
		{"RESP bad length", typ(v1alpha1.FramingRESP, 100), "*1\r\n$x\r\n", nil, "", framing.ErrMalformed},
		{"RESP bulk without CRLF", typ(v1alpha1.FramingRESP, 100), "*1\r\n$1\r\nabc", nil, "", framing.ErrMalformed},
		{"RESP bulk over the bound", typ(v1alpha1.FramingRESP, 100), "*1\r\n$1000\r\n", nil, "", framing.ErrTooLarge},
		{"RESP endless header", typ(v1alpha1.FramingRESP, 1000), "*1\r\n$" + strings.Repeat("1", 40), nil, "", framing.ErrMalformed},
		{"HTTP no body, pipelined", typ(v1alpha1.FramingHTTP, 200), "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c",
			[]string{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET /b HTTP/1.1\r\n\r\n"}, "GET /c", nil},
		{"HTTP content-length", typ(v1alpha1.FramingHTTP, 200), "POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nhelloGET / HTTP/1.0\n\n",
			[]string{"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello", "GET / HTTP/1.0\n\n"}, "", nil},
		{"HTTP chunked with trailers", typ(v1alpha1.FramingHTTP, 200), "\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n4;x=y\r\nab\r\n\r\n0\r\nX-T: 1\r\n\r\nGET",
			[]string{"\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n4;x=y\r\nab\r\n\r\n0\r\nX-T: 1\r\n\r\n"}, "GET", nil},
		{"HTTP conflicting lengths", typ(v1alpha1.FramingHTTP, 200), "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", nil, "", framing.ErrMalformed},
		{"HTTP bad chunk size", typ(v1alpha1.FramingHTTP, 200), "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", nil, "", framing.ErrMalformed},
		{"HTTP body over the bound", typ(v1alpha1.FramingHTTP, 200), "POST / HTTP/1.1\r\nContent-Length: 999\r\n\r\n", nil, "", framing.ErrTooLarge},
		{"HTTP headers over the bound", typ(v1alpha1.FramingHTTP, 64), "GET / HTTP/1.1\r\nX: " + big, nil, "", framing.ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, step := range []int{0, 1, 3} {
				frames, rest, err := cut(t, tc.f, []byte(tc.stream), step)
				if tc.errKind != nil {
					if !errors.Is(err, tc.errKind) {
						t.Fatalf("step %d: err = %v, want %v", step, err, tc.errKind)
					}
				} else if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				if strings.Join(frames, "|") != strings.Join(tc.frames, "|") || rest != tc.rest {
					t.Fatalf("step %d: frames %q rest %q, want %q rest %q", step, frames, rest, tc.frames, tc.rest)
				}
			}
		})
	}
}

func TestReadIsOneFramePerWrite(t *testing.T) {
	fr := framing.New(typ(v1alpha1.FramingRead, 4))
	for _, w := range []string{"ab", "cdefg"} {
		n := fr.Write([]byte(w))
		var got []string
		for {
			f, err := fr.Next()
			if err != nil {
				t.Fatal(err)
			}
			if f == nil {
				break
			}
			got = append(got, string(f))
		}
		want := []string{w[:n]}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("write %q: frames %q, want %q (at most maxInputSize per input)", w, got, want)
		}
	}
}

// TestSwitchRecutsBuffered: bytes already buffered are cut under the new framing.
func TestSwitchRecutsBuffered(t *testing.T) {
	fr := framing.New(delim("\r\n", 100))
	fr.Write([]byte("DATA\r\nline 1\r\nline 2\r\n.\r\nQUIT\r\n"))
	first, _ := fr.Next()
	if string(first) != "DATA\r\n" {
		t.Fatalf("first frame %q", first)
	}
	fr.Switch(delim("\r\n.\r\n", 100))
	body, _ := fr.Next()
	if string(body) != "line 1\r\nline 2\r\n.\r\n" {
		t.Fatalf("body %q", body)
	}
	fr.Switch(delim("\r\n", 100))
	quit, _ := fr.Next()
	if string(quit) != "QUIT\r\n" {
		t.Fatalf("after switching back: %q", quit)
	}
}

// TestSwitchToSmallerBound gives back memory a larger bound let the buffer take.
func TestSwitchToSmallerBound(t *testing.T) {
	fr := framing.New(delim("\n", 1<<16))
	fr.Write(bytes.Repeat([]byte("x"), 10000))
	if f, err := fr.Next(); f != nil || err != nil {
		t.Fatal(f, err)
	}
	fr.Write([]byte("\n"))
	if f, _ := fr.Next(); len(f) != 10001 {
		t.Fatalf("frame of %d bytes", len(f))
	}
	fr.Switch(delim("\n", 100))
	if fr.Held() > 100 {
		t.Errorf("holds %d bytes after switching to a bound of 100", fr.Held())
	}
	fr.Write([]byte("ok\n"))
	if f, _ := fr.Next(); string(f) != "ok\n" {
		t.Errorf("frame %q", f)
	}
}

func TestErrorsSayWhy(t *testing.T) {
	_, _, err := cut(t, length(rules.LengthField{Size: 2}, 100), []byte("\x01\x00"), 0)
	if err == nil || !strings.Contains(err.Error(), "Length framing: frame over maxFrameSize: a frame of at least 256 bytes, over 100") {
		t.Errorf("err = %v", err)
	}
}

func TestFill(t *testing.T) {
	cases := []struct {
		name  string
		l     rules.LengthField
		msgs  []string
		want  []string
		error string
	}{
		{"2 bytes big-endian, excluding itself", rules.LengthField{Size: 2, Adjust: 2}, []string{"\x00\x00abc", "\xff\xffd"}, []string{"\x00\x03abc", "\x00\x01d"}, ""},
		{"4 bytes little-endian at offset 1", rules.LengthField{Offset: 1, Size: 4, Little: true}, []string{"T....xy"}, []string{"T\x07\x00\x00\x00xy"}, ""},
		{"8 bytes", rules.LengthField{Size: 8}, []string{"........z"}, []string{"\x00\x00\x00\x00\x00\x00\x00\x09z"}, ""},
		{"1 byte too small", rules.LengthField{Size: 1}, []string{"x" + strings.Repeat("y", 300), "\x00a"}, []string{"x" + strings.Repeat("y", 300), "\x02a"}, "does not fit the 1-byte length field"},
		{"too short for the field", rules.LengthField{Offset: 2, Size: 2}, []string{"abc"}, []string{"abc"}, "no room"},
		{"MQTT grows the integer", rules.LengthField{Offset: 1, MQTT: true}, []string{"\x30\x00" + strings.Repeat("p", 200), "\x20\x00\x00\x00"},
			[]string{"\x30\xc8\x01" + strings.Repeat("p", 200), "\x20\x02\x00\x00"}, ""},
		{"MQTT placeholder missing", rules.LengthField{Offset: 1, MQTT: true}, []string{"\x30"}, []string{"\x30"}, "no length field"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var wire []byte
			var ends []int
			for _, m := range tc.msgs {
				wire = append(wire, m...)
				ends = append(ends, len(wire))
			}
			out, outEnds, err := framing.Fill(&tc.l, wire, ends)
			if tc.error == "" && err != nil || tc.error != "" && (err == nil || !strings.Contains(err.Error(), tc.error)) {
				t.Fatalf("err = %v, want %q", err, tc.error)
			}
			var got []string
			start := 0
			for _, e := range outEnds {
				got = append(got, string(out[start:e]))
				start = e
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("replies %q, want %q", got, tc.want)
			}
			// A filled reply is a frame of its own framing.
			if err == nil {
				frames, rest, err := cut(t, length(tc.l, 1000), out, 0)
				if err != nil || rest != "" || strings.Join(frames, "|") != strings.Join(tc.want, "|") {
					t.Errorf("filled replies cut into %q rest %q err %v", frames, rest, err)
				}
			}
		})
	}
}
