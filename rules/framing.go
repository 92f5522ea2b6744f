package rules

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// Framing bounds.
const (
	// DefaultMaxFrameSize bounds a frame when neither the framing nor the operation's says.
	DefaultMaxFrameSize = 65536
	// MaxFrameSizeLimit is the largest maxFrameSize the API accepts.
	MaxFrameSizeLimit = 16 << 20
)

// Framing is a compiled operation.framing or rule framing: how a TCP byte stream is cut
// into inputs (docs/rules.md §12).
type Framing struct {
	Type v1alpha1.FramingType
	// Delimiter ends each frame of a Delimiter framing; the frame includes it.
	Delimiter []byte
	// Length describes the size field of a Length framing.
	Length *LengthField
	// MaxFrameSize bounds one frame in bytes; under Read it is maxInputSize, the most one
	// read takes.
	MaxFrameSize int
}

// LengthField is the compiled length field of a Length framing. A fixed-size field gives a
// frame size of value + Adjust; an MQTT variable-length integer gives Offset + the
// integer's own bytes + value + Adjust (MQTT's "remaining length" counts what follows it).
type LengthField struct {
	Offset int
	// Size is the fixed field's size in bytes (1, 2, 4 or 8); 0 with MQTT.
	Size        int
	Little      bool
	MQTT        bool
	Adjust      int
	FillReplies bool
}

// framing compiles a framing at path; inherit is the maxFrameSize a framing without one
// takes. It returns nil when f is nil.
func (c *compiler) framing(path *field.Path, f *v1alpha1.Framing, inherit int) *Framing {
	if f == nil {
		return nil
	}
	if c.p.Transport == v1alpha1.TransportUDP {
		c.add(field.Forbidden(path, "framing cuts a TCP byte stream into inputs; on UDP each datagram is one input"))
		return nil
	}
	out := &Framing{Type: f.Type, MaxFrameSize: inherit}
	if out.Type == "" {
		out.Type = v1alpha1.FramingRead
	}
	notFor := func(child string) {
		c.add(field.Forbidden(path.Child(child), fmt.Sprintf("does not belong to %s framing", out.Type)))
	}
	if f.MaxFrameSize != nil {
		if out.Type == v1alpha1.FramingRead {
			c.add(field.Forbidden(path.Child("maxFrameSize"), "Read framing takes at most operation.maxInputSize bytes per input"))
		} else {
			out.MaxFrameSize = c.intIn(path.Child("maxFrameSize"), f.MaxFrameSize, inherit, 1, MaxFrameSizeLimit)
		}
	}
	if out.Type == v1alpha1.FramingRead {
		out.MaxFrameSize = c.p.MaxInputSize
	}
	switch out.Type {
	case v1alpha1.FramingRead, v1alpha1.FramingRESP, v1alpha1.FramingHTTP, v1alpha1.FramingDelimiter, v1alpha1.FramingLength:
	default:
		c.add(field.NotSupported(path.Child("type"), f.Type, []string{
			string(v1alpha1.FramingRead), string(v1alpha1.FramingDelimiter), string(v1alpha1.FramingLength),
			string(v1alpha1.FramingRESP), string(v1alpha1.FramingHTTP),
		}))
		return nil
	}
	if out.Type == v1alpha1.FramingDelimiter {
		out.Delimiter = c.delimiter(path, f, out.MaxFrameSize)
	} else {
		if f.Delimiter != "" {
			notFor("delimiter")
		}
		if f.DelimiterBase64 {
			notFor("delimiterBase64")
		}
	}
	if out.Type == v1alpha1.FramingLength {
		if f.Length == nil {
			c.add(field.Required(path.Child("length"), "Length framing reads each frame's size from this field"))
		} else {
			out.Length = c.lengthField(path.Child("length"), f.Length, out.MaxFrameSize)
		}
	} else if f.Length != nil {
		notFor("length")
	}
	return out
}

func (c *compiler) delimiter(path *field.Path, f *v1alpha1.Framing, maxFrame int) []byte {
	dp := path.Child("delimiter")
	if f.Delimiter == "" {
		c.add(field.Required(dp, "Delimiter framing ends each input with these bytes"))
		return nil
	}
	d := []byte(f.Delimiter)
	if f.DelimiterBase64 {
		raw, ok := c.base64(dp, f.Delimiter)
		if !ok {
			return nil
		}
		if len(raw) == 0 {
			c.add(field.Required(dp, "decodes to no bytes"))
			return nil
		}
		d = raw
	}
	if len(d) > maxFrame {
		c.add(field.Invalid(dp, f.Delimiter, fmt.Sprintf("is longer than maxFrameSize (%d bytes)", maxFrame)))
	}
	return d
}

func (c *compiler) lengthField(path *field.Path, l *v1alpha1.LengthField, maxFrame int) *LengthField {
	out := &LengthField{Offset: int(l.Offset), Adjust: int(l.Adjust), FillReplies: l.FillReplies}
	if l.Offset < 0 {
		c.add(field.Invalid(path.Child("offset"), l.Offset, "must not be negative"))
	}
	switch l.Format {
	case "":
		out.Size = int(l.Size)
		switch l.Size {
		case 0:
			out.Size = 2
		case 1, 2, 4, 8:
		default:
			c.add(field.NotSupported(path.Child("size"), l.Size, []string{"1", "2", "4", "8"}))
		}
		switch l.Endian {
		case "", v1alpha1.EndianBig:
		case v1alpha1.EndianLittle:
			out.Little = true
		default:
			c.add(field.NotSupported(path.Child("endian"), l.Endian, []string{string(v1alpha1.EndianBig), string(v1alpha1.EndianLittle)}))
		}
	case v1alpha1.LengthMQTT:
		out.MQTT = true
		if l.Size != 0 {
			c.add(field.Forbidden(path.Child("size"), "MQTT's variable-length integer sizes itself (1 to 4 bytes)"))
		}
		if l.Endian != "" {
			c.add(field.Forbidden(path.Child("endian"), "MQTT's variable-length integer has its own byte order"))
		}
	default:
		c.add(field.NotSupported(path.Child("format"), l.Format, []string{string(v1alpha1.LengthMQTT)}))
	}
	// The header must fit in a frame: the fixed field, or the integer's first byte.
	if head := out.Offset + max(out.Size, 1); l.Offset >= 0 && head > maxFrame {
		c.add(field.Invalid(path.Child("offset"), l.Offset,
			fmt.Sprintf("the length field ends at byte %d, past maxFrameSize (%d)", head, maxFrame)))
	}
	return out
}

// operationFraming compiles operation.framing. The rules' framings are compiled with each rule,
// inheriting the operation's maxFrameSize.
func (c *compiler) operationFraming(path *field.Path) {
	f := c.framing(path.Child("framing"), c.spec.Operation.Framing, DefaultMaxFrameSize)
	if f != nil && f.Type != v1alpha1.FramingRead {
		c.p.Framing = f
	}
}

// ruleFraming compiles a rule's framing, which switches its socket's framing from the next
// input on.
func (c *compiler) ruleFraming(path *field.Path, f *v1alpha1.Framing) *Framing {
	inherit := DefaultMaxFrameSize
	if c.p.Framing != nil {
		inherit = c.p.Framing.MaxFrameSize
	} else if op := c.spec.Operation.Framing; op != nil && op.MaxFrameSize != nil && *op.MaxFrameSize > 0 {
		inherit = int(*op.MaxFrameSize)
	}
	rf := c.framing(path, f, inherit)
	if rf != nil {
		c.p.Reframes = true
	}
	return rf
}
