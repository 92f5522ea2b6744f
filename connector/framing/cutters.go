package framing

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/parley-dev/parley/rules"
)

// Bounds on the lines a protocol framing reads before it knows a frame's size: a header
// of a RESP array or bulk string, an HTTP chunk-size line. Longer is malformed.
const (
	maxRESPHeader  = 32
	maxChunkHeader = 1024
)

// delimiterCut ends a frame after, and including, the delimiter. seen is how far the
// current frame has been searched, so bytes arriving one at a time are searched once.
type delimiterCut struct {
	delim []byte
	seen  int
}

func (c *delimiterCut) cut(b []byte) (int, int, error) {
	from := max(0, c.seen-len(c.delim)+1)
	i := bytes.Index(b[from:], c.delim)
	if i < 0 {
		c.seen = len(b)
		return 0, len(b) + 1, nil
	}
	c.seen = 0
	return from + i + len(c.delim), 0, nil
}

func (c *delimiterCut) reset() { c.seen = 0 }

// fixedCut reads a frame's size from a fixed-size integer: value + adjust.
type fixedCut struct{ l *rules.LengthField }

func (c fixedCut) cut(b []byte) (int, int, error) {
	head := c.l.Offset + c.l.Size
	if len(b) < head {
		return 0, head, nil
	}
	v := readUint(b[c.l.Offset:head], c.l.Little)
	return frameOf(len(b), head, v, c.l.Adjust)
}

func (fixedCut) reset() {}

// mqttCut reads MQTT's variable-length integer ("remaining length", 1 to 4 bytes, 7 bits
// each, least significant first, the high bit saying another byte follows). The frame is
// offset + the integer's bytes + its value + adjust.
type mqttCut struct{ l *rules.LengthField }

func (c mqttCut) cut(b []byte) (int, int, error) {
	v, n, err := readVarint(b[min(c.l.Offset, len(b)):])
	if err != nil {
		return 0, 0, err
	}
	if n == 0 {
		return 0, len(b) + 1, nil
	}
	head := c.l.Offset + n
	return frameOf(len(b), head, uint64(v), c.l.Adjust+head)
}

func (mqttCut) reset() {}

// frameOf is the cut of a length framing once the header (head bytes) is known: the
// frame's size is v + adjust, which must cover the header.
func frameOf(have, head int, v uint64, adjust int) (int, int, error) {
	const huge = 1 << 40 // past any maxFrameSize: reported as too large, without overflow
	size := int(min(v, huge)) + adjust
	if size < head {
		return 0, 0, fmt.Errorf("%w: the length field says %d bytes, less than its header's %d", ErrMalformed, size, head)
	}
	if have < size {
		return 0, size, nil
	}
	return size, 0, nil
}

func readUint(b []byte, little bool) uint64 {
	var v uint64
	for i := range b {
		j := i
		if little {
			j = len(b) - 1 - i
		}
		v = v<<8 | uint64(b[j])
	}
	return v
}

// readVarint reads an MQTT variable-length integer; n = 0 when b holds only part of it.
func readVarint(b []byte) (v, n int, err error) {
	for i := range 4 {
		if i >= len(b) {
			return 0, 0, nil
		}
		v |= int(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1, nil
		}
	}
	return 0, 0, fmt.Errorf("%w: MQTT remaining length longer than 4 bytes", ErrMalformed)
}

// respCut cuts Redis commands as a Redis server reads them: a multi-bulk array
// (*N\r\n then N bulk strings $len\r\n<len bytes>\r\n, binary-safe), or an inline
// command (one line ending in \n). pos is where parsing resumes in the current frame,
// left the array's elements still to read (-1: its header not read yet).
type respCut struct {
	pos, left int
	inArray   bool
}

func (c *respCut) reset() { *c = respCut{} }

func (c *respCut) cut(b []byte) (int, int, error) {
	if b[0] != '*' {
		i := bytes.IndexByte(b[c.pos:], '\n')
		if i < 0 {
			c.pos = len(b)
			return 0, len(b) + 1, nil
		}
		n := c.pos + i + 1
		c.reset()
		return n, 0, nil
	}
	if !c.inArray {
		v, end, err := respInt(b, 1, '*')
		if err != nil || end == 0 {
			return 0, len(b) + 1, err
		}
		c.inArray, c.pos, c.left = true, end, int(v)
	}
	for c.left > 0 {
		if c.pos >= len(b) {
			return 0, c.pos + 1, nil
		}
		if b[c.pos] != '$' {
			return 0, 0, fmt.Errorf("%w: RESP array element starts with %q, not a bulk string's '$'", ErrMalformed, b[c.pos])
		}
		v, end, err := respInt(b, c.pos+1, '$')
		if err != nil || end == 0 {
			return 0, len(b) + 1, err
		}
		if v < 0 {
			return 0, 0, fmt.Errorf("%w: RESP bulk string of length %d in a command", ErrMalformed, v)
		}
		stop := end + int(v) + 2
		if len(b) < stop {
			return 0, stop, nil
		}
		if b[stop-2] != '\r' || b[stop-1] != '\n' {
			return 0, 0, fmt.Errorf("%w: RESP bulk string not followed by CRLF", ErrMalformed)
		}
		c.pos = stop
		c.left--
	}
	n := c.pos
	c.reset()
	return n, 0, nil
}

// respInt reads the integer of a RESP header line starting at b[from] up to its CRLF; end
// is just past the CRLF, 0 when the line is not complete yet.
func respInt(b []byte, from int, kind byte) (v int64, end int, err error) {
	line := b[from:min(len(b), from+maxRESPHeader)]
	i := bytes.IndexByte(line, '\r')
	if i < 0 || i+1 >= len(line) {
		if len(line) == maxRESPHeader {
			return 0, 0, fmt.Errorf("%w: RESP %c header longer than %d bytes", ErrMalformed, kind, maxRESPHeader)
		}
		return 0, 0, nil
	}
	if line[i+1] != '\n' {
		return 0, 0, fmt.Errorf("%w: RESP %c header not ended by CRLF", ErrMalformed, kind)
	}
	v, err = strconv.ParseInt(string(line[:i]), 10, 64)
	if err != nil || v > 1<<40 {
		return 0, 0, fmt.Errorf("%w: RESP %c header %q is not a length", ErrMalformed, kind, line[:i])
	}
	return v, from + i + 2, nil
}

// httpCut cuts HTTP/1.x requests: the request line and headers up to the blank line, then
// a chunked body with its trailers (Transfer-Encoding: chunked, which wins over
// Content-Length as RFC 9112 §6.3 says), or Content-Length bytes, or no body. Empty lines
// before a request belong to it (RFC 9112 §2.2). State: how far the headers were searched
// (seen), where they end (head), and for a chunked body where parsing resumes (pos).
type httpCut struct {
	seen, head, pos int
	bodyEnd         int
	chunked         bool
	trailers        bool
}

func (c *httpCut) reset() { *c = httpCut{} }

func (c *httpCut) cut(b []byte) (int, int, error) {
	if c.head == 0 {
		if err := c.headers(b); err != nil || c.head == 0 {
			return 0, len(b) + 1, err
		}
	}
	if !c.chunked {
		if len(b) < c.bodyEnd {
			return 0, c.bodyEnd, nil
		}
		n := c.bodyEnd
		c.reset()
		return n, 0, nil
	}
	for {
		i := bytes.IndexByte(b[c.pos:], '\n')
		if i < 0 {
			if len(b)-c.pos > maxChunkHeader {
				return 0, 0, fmt.Errorf("%w: HTTP chunk line longer than %d bytes", ErrMalformed, maxChunkHeader)
			}
			return 0, len(b) + 1, nil
		}
		line := bytes.TrimRight(b[c.pos:c.pos+i], "\r")
		next := c.pos + i + 1
		if c.trailers {
			if len(line) == 0 {
				c.reset()
				return next, 0, nil
			}
			c.pos = next
			continue
		}
		if j := bytes.IndexByte(line, ';'); j >= 0 {
			line = line[:j] // chunk extensions
		}
		size, err := strconv.ParseUint(string(bytes.TrimSpace(line)), 16, 40)
		if err != nil {
			return 0, 0, fmt.Errorf("%w: HTTP chunk size %q", ErrMalformed, line)
		}
		if size == 0 {
			c.trailers, c.pos = true, next
			continue
		}
		stop := next + int(size) + 2
		if len(b) < stop {
			return 0, stop, nil
		}
		if b[stop-2] != '\r' || b[stop-1] != '\n' {
			return 0, 0, fmt.Errorf("%w: HTTP chunk data not followed by CRLF", ErrMalformed)
		}
		c.pos = stop
	}
}

// headers looks for the blank line that ends the request's headers and, once found, reads
// how the body is delimited.
func (c *httpCut) headers(b []byte) error {
	lead := 0
	for lead < len(b) && (b[lead] == '\r' || b[lead] == '\n') {
		lead++
	}
	from := max(lead, c.seen-2)
	end := -1
	for i := from; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		k := i + j + 1
		if k < len(b) && b[k] == '\n' {
			end = k + 1
			break
		}
		if k+1 < len(b) && b[k] == '\r' && b[k+1] == '\n' {
			end = k + 2
			break
		}
		i = k
	}
	if end < 0 {
		c.seen = len(b)
		return nil
	}
	length, chunked := int64(-1), false
	for _, line := range bytes.Split(b[lead:end], []byte("\n"))[1:] {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(bytes.TrimSpace(name), []byte("Content-Length")):
			v, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || v < 0 || (length >= 0 && v != length) {
				return fmt.Errorf("%w: HTTP Content-Length %q", ErrMalformed, value)
			}
			length = v
		case bytes.EqualFold(bytes.TrimSpace(name), []byte("Transfer-Encoding")):
			codings := bytes.Split(value, []byte(","))
			chunked = bytes.EqualFold(bytes.TrimSpace(codings[len(codings)-1]), []byte("chunked"))
		}
	}
	c.head, c.chunked, c.pos = end, chunked, end
	c.bodyEnd = end + int(min(max(length, 0), 1<<40))
	return nil
}

// fill writes the size of msg into its length field; see Fill.
func fill(l *rules.LengthField, msg []byte) ([]byte, error) {
	if l.MQTT {
		if len(msg) < l.Offset+1 {
			return msg, fmt.Errorf("a reply of %d bytes has no length field at offset %d", len(msg), l.Offset)
		}
		_, old, err := readVarint(msg[l.Offset:])
		if err != nil || old == 0 {
			return msg, fmt.Errorf("the reply's length field at offset %d is not an MQTT variable-length integer (write a placeholder such as \\x00)", l.Offset)
		}
		v := len(msg) - l.Offset - old - l.Adjust
		if v < 0 || v > 268435455 {
			return msg, fmt.Errorf("a remaining length of %d does not fit MQTT's variable-length integer", v)
		}
		out := make([]byte, 0, len(msg)+4)
		out = append(out, msg[:l.Offset]...)
		for {
			b := byte(v & 0x7f)
			v >>= 7
			if v > 0 {
				b |= 0x80
			}
			out = append(out, b)
			if v == 0 {
				break
			}
		}
		return append(out, msg[l.Offset+old:]...), nil
	}
	if len(msg) < l.Offset+l.Size {
		return msg, fmt.Errorf("a reply of %d bytes has no room for its %d-byte length field at offset %d", len(msg), l.Size, l.Offset)
	}
	v := len(msg) - l.Adjust
	if v < 0 || (l.Size < 8 && uint64(v) >= 1<<(8*l.Size)) {
		return msg, fmt.Errorf("a size of %d does not fit the %d-byte length field", v, l.Size)
	}
	field := msg[l.Offset : l.Offset+l.Size]
	switch l.Size {
	case 1:
		field[0] = byte(v)
	case 2:
		order(l).PutUint16(field, uint16(v))
	case 4:
		order(l).PutUint32(field, uint32(v))
	case 8:
		order(l).PutUint64(field, uint64(v))
	}
	return msg, nil
}

func order(l *rules.LengthField) binary.ByteOrder {
	if l.Little {
		return binary.LittleEndian
	}
	return binary.BigEndian
}

// Fill writes each reply's own size into its length field (fillReplies): wire holds the
// replies, ends where each ends. A fixed-size field is written in place; an MQTT integer
// replaces the one the reply holds at the offset (its placeholder), which may change the
// reply's length, so Fill returns the replies and their ends anew. A reply whose field
// cannot hold its size is sent as it is, and the error says why.
func Fill(l *rules.LengthField, wire []byte, ends []int) ([]byte, []int, error) {
	var errs []error
	if !l.MQTT {
		start := 0
		for _, end := range ends {
			if end == start {
				continue // nothing sent, nothing to size
			}
			if _, err := fill(l, wire[start:end]); err != nil {
				errs = append(errs, err)
			}
			start = end
		}
		return wire, ends, errors.Join(errs...)
	}
	out := make([]byte, 0, len(wire)+4*len(ends))
	outEnds := make([]int, 0, len(ends))
	start := 0
	for _, end := range ends {
		msg, err := wire[start:end], error(nil)
		if end > start {
			msg, err = fill(l, msg)
		}
		if err != nil {
			errs = append(errs, err)
		}
		out = append(out, msg...)
		outEnds = append(outEnds, len(out))
		start = end
	}
	return out, outEnds, errors.Join(errs...)
}
