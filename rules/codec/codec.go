// Package codec turns the bytes of the wire into the text rules work on and back, for each
// encoding a conversation may declare.
package codec

import (
	"fmt"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/encoding/unicode/utf32"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// Codec decodes inputs and encodes replies.
type Codec interface {
	// Decode returns the text of raw bytes; undecodable bytes become U+FFFD.
	Decode(b []byte) string
	// AppendEncode appends the bytes of s to dst; characters the encoding cannot hold become '?'.
	AppendEncode(dst []byte, s string) []byte
}

// For returns the codec of an encoding name; "" is utf-8.
func For(enc v1alpha1.Encoding) (Codec, error) {
	switch enc {
	case "", v1alpha1.EncodingUTF8:
		return utf8Codec{}, nil
	case v1alpha1.EncodingASCII:
		return asciiCodec{}, nil
	case v1alpha1.EncodingBinary:
		return binaryCodec{}, nil
	case v1alpha1.EncodingUTF16:
		// RFC 2781: honour a byte-order mark, else big-endian; write big-endian, no mark.
		return textCodec{
			dec: unicode.UTF16(unicode.BigEndian, unicode.UseBOM),
			enc: unicode.UTF16(unicode.BigEndian, unicode.IgnoreBOM),
		}, nil
	case v1alpha1.EncodingUTF32:
		return textCodec{
			dec: utf32.UTF32(utf32.BigEndian, utf32.UseBOM),
			enc: utf32.UTF32(utf32.BigEndian, utf32.IgnoreBOM),
		}, nil
	}
	return nil, fmt.Errorf("unsupported encoding %q", enc)
}

// Encode returns the bytes of s.
func Encode(c Codec, s string) []byte { return c.AppendEncode(nil, s) }

type utf8Codec struct{}

// Decode keeps invalid bytes as they are: Go's regexp and strings read them as U+FFFD, and
// the bytes go back out unchanged when echoed.
func (utf8Codec) Decode(b []byte) string                   { return string(b) }
func (utf8Codec) AppendEncode(dst []byte, s string) []byte { return append(dst, s...) }

type asciiCodec struct{}

func (asciiCodec) Decode(b []byte) string {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return decodeASCIISlow(b)
		}
	}
	return string(b)
}

func decodeASCIISlow(b []byte) string {
	out := make([]rune, len(b))
	for i, c := range b {
		if c >= utf8.RuneSelf {
			out[i] = utf8.RuneError
		} else {
			out[i] = rune(c)
		}
	}
	return string(out)
}

func (asciiCodec) AppendEncode(dst []byte, s string) []byte {
	for _, r := range s {
		if r >= utf8.RuneSelf {
			r = '?'
		}
		dst = append(dst, byte(r))
	}
	return dst
}

// binaryCodec maps byte n to U+00nn (Latin-1) so regexes can match any byte with \xNN.
type binaryCodec struct{}

func (binaryCodec) Decode(b []byte) string {
	out := make([]byte, 0, len(b)*2)
	for _, c := range b {
		out = utf8.AppendRune(out, rune(c))
	}
	return string(out)
}

func (binaryCodec) AppendEncode(dst []byte, s string) []byte {
	for _, r := range s {
		if r > 0xFF {
			r = '?'
		}
		dst = append(dst, byte(r))
	}
	return dst
}

type textCodec struct{ dec, enc encoding.Encoding }

func (c textCodec) Decode(b []byte) string {
	out, err := c.dec.NewDecoder().Bytes(b)
	if err != nil {
		return string(utf8.RuneError)
	}
	return string(out)
}

func (c textCodec) AppendEncode(dst []byte, s string) []byte {
	out, err := encoding.ReplaceUnsupported(c.enc.NewEncoder()).String(s)
	if err != nil {
		return dst
	}
	return append(dst, out...)
}
