package expr

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash/crc32"
	"math"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
)

// The Parley library: what wire formats need and CEL's standard library and extensions lack.
// Every function is documented in docs/rules.md §13 ("The Parley library"); each has a cost
// model, so an expression's estimate and its run-time charge count its work (cost.go).

// byteWork is the cost of touching n bytes (hashing, hex, copying): CEL's own factor for
// scanning a string, so a byte costs what a character does.
func byteWork(n cost.QuantityExpr) cost.QuantityExpr {
	return cost.Sum(cost.Const(cost.CallCost), cost.StringScan(n))
}

// width is one fixed-size integer encoding: be16, le32...
type width struct {
	name   string
	bytes  int
	little bool
}

var widths = []width{
	{"be8", 1, false}, {"be16", 2, false}, {"be32", 4, false}, {"be64", 8, false},
	{"le8", 1, true}, {"le16", 2, true}, {"le32", 4, true}, {"le64", 8, true},
}

func parleyLibrary() cel.EnvOption {
	return cel.Lib(parleyLib{})
}

type parleyLib struct{}

func (parleyLib) LibraryName() string { return "parley" }

func (parleyLib) ProgramOptions() []cel.ProgramOption { return nil }

func (parleyLib) CompileOptions() []cel.EnvOption {
	bytesOrString := func(fn func([]byte) ref.Val) functionsUnary {
		return func(v ref.Val) ref.Val {
			switch v := v.(type) {
			case types.Bytes:
				return fn(v)
			case types.String:
				return fn([]byte(v))
			}
			return types.NoSuchOverloadErr()
		}
	}
	opts := []cel.EnvOption{
		cel.Function("hex",
			cel.Overload("hex_bytes", []*cel.Type{cel.BytesType}, cel.StringType, cel.UnaryBinding(bytesOrString(hexOf))),
			cel.Overload("hex_string", []*cel.Type{cel.StringType}, cel.StringType, cel.UnaryBinding(bytesOrString(hexOf)))),
		cel.Function("unhex",
			cel.Overload("unhex_string", []*cel.Type{cel.StringType}, cel.BytesType, cel.UnaryBinding(unhex))),
		cel.Function("sha256",
			cel.Overload("sha256_bytes", []*cel.Type{cel.BytesType}, cel.BytesType, cel.UnaryBinding(bytesOrString(sha256Of))),
			cel.Overload("sha256_string", []*cel.Type{cel.StringType}, cel.BytesType, cel.UnaryBinding(bytesOrString(sha256Of)))),
		cel.Function("crc32",
			cel.Overload("crc32_bytes", []*cel.Type{cel.BytesType}, cel.IntType, cel.UnaryBinding(bytesOrString(crc32Of))),
			cel.Overload("crc32_string", []*cel.Type{cel.StringType}, cel.IntType, cel.UnaryBinding(bytesOrString(crc32Of)))),
		cel.Function("fromBE",
			cel.Overload("fromBE_bytes", []*cel.Type{cel.BytesType}, cel.IntType, cel.UnaryBinding(func(v ref.Val) ref.Val { return fromEndian(v, false) }))),
		cel.Function("fromLE",
			cel.Overload("fromLE_bytes", []*cel.Type{cel.BytesType}, cel.IntType, cel.UnaryBinding(func(v ref.Val) ref.Val { return fromEndian(v, true) }))),
		cel.Function("slice",
			cel.MemberOverload("bytes_slice_int_int", []*cel.Type{cel.BytesType, cel.IntType, cel.IntType}, cel.BytesType,
				cel.FunctionBinding(sliceBytes))),
		cel.CostModel(
			cost.Overload("hex_bytes", cost.EvalCost(byteWork(cost.Arg(0))), cost.ResultSize(cost.Scale(cost.Arg(0), 2))),
			cost.Overload("hex_string", cost.EvalCost(byteWork(cost.Arg(0))), cost.ResultSize(cost.Scale(cost.Arg(0), 8))),
			cost.Overload("unhex_string", cost.EvalCost(byteWork(cost.Arg(0))), cost.ResultSize(cost.AtMost(cost.Arg(0)))),
			cost.Overload("sha256_bytes", cost.EvalCost(byteWork(cost.Arg(0))), cost.ResultSize(cost.Const(sha256.Size))),
			cost.Overload("sha256_string", cost.EvalCost(byteWork(cost.Arg(0))), cost.ResultSize(cost.Const(sha256.Size))),
			cost.Overload("crc32_bytes", cost.EvalCost(byteWork(cost.Arg(0)))),
			cost.Overload("crc32_string", cost.EvalCost(byteWork(cost.Arg(0)))),
			cost.Overload("fromBE_bytes", cost.EvalCost(cost.Const(cost.CallCost))),
			cost.Overload("fromLE_bytes", cost.EvalCost(cost.Const(cost.CallCost))),
			cost.MemberOverload("bytes_slice_int_int", cost.EvalCost(byteWork(cost.Target())), cost.ResultSize(cost.AtMost(cost.Target()))),
		),
	}
	for _, w := range widths {
		id := w.name + "_int"
		opts = append(opts,
			cel.Function(w.name, cel.Overload(id, []*cel.Type{cel.IntType}, cel.BytesType, cel.UnaryBinding(w.encode))),
			cel.CostModel(cost.Overload(id, cost.EvalCost(cost.Const(cost.CallCost)), cost.ResultSize(cost.Const(uint64(w.bytes))))),
		)
	}
	return opts
}

type functionsUnary = func(ref.Val) ref.Val

func hexOf(b []byte) ref.Val { return types.String(hex.EncodeToString(b)) }

func unhex(v ref.Val) ref.Val {
	s, ok := v.(types.String)
	if !ok {
		return types.NoSuchOverloadErr()
	}
	b, err := hex.DecodeString(string(s))
	if err != nil {
		return types.NewErr("unhex: %v", err)
	}
	return types.Bytes(b)
}

func sha256Of(b []byte) ref.Val {
	sum := sha256.Sum256(b)
	return types.Bytes(sum[:])
}

func crc32Of(b []byte) ref.Val { return types.Int(crc32.ChecksumIEEE(b)) }

// encode writes an int in w's width and byte order. It takes the signed and the unsigned range
// of the width (be16(-1) and be16(65535) are both ff ff), and refuses what fits neither.
func (w width) encode(v ref.Val) ref.Val {
	i, ok := v.(types.Int)
	if !ok {
		return types.NoSuchOverloadErr()
	}
	n := int64(i)
	if w.bytes < 8 {
		bits := uint(8 * w.bytes)
		lo, hi := -int64(1)<<(bits-1), int64(1)<<bits-1
		if n < lo || n > hi {
			return types.NewErr("%s(%d): does not fit %d bits", w.name, n, bits)
		}
	}
	var buf [8]byte
	if w.little {
		binary.LittleEndian.PutUint64(buf[:], uint64(n))
		return types.Bytes(append([]byte(nil), buf[:w.bytes]...))
	}
	binary.BigEndian.PutUint64(buf[:], uint64(n))
	return types.Bytes(append([]byte(nil), buf[8-w.bytes:]...))
}

// fromEndian reads 1 to 8 bytes as an unsigned integer; 8 bytes with the top bit set read as
// the negative int of the same bits, since CEL's int has 64 bits.
func fromEndian(v ref.Val, little bool) ref.Val {
	b, ok := v.(types.Bytes)
	if !ok {
		return types.NoSuchOverloadErr()
	}
	if len(b) == 0 || len(b) > 8 {
		name := "fromBE"
		if little {
			name = "fromLE"
		}
		return types.NewErr("%s: takes 1 to 8 bytes, not %d", name, len(b))
	}
	var n uint64
	for i := range b {
		j := i
		if little {
			j = len(b) - 1 - i
		}
		n = n<<8 | uint64(b[j])
	}
	return types.Int(int64(n))
}

// sliceBytes is b.slice(start, end): bytes start (included) to end (excluded), as
// lists.slice and strings' substring count; out of range is an error.
func sliceBytes(args ...ref.Val) ref.Val {
	if len(args) != 3 {
		return types.NoSuchOverloadErr()
	}
	b, ok1 := args[0].(types.Bytes)
	start, ok2 := args[1].(types.Int)
	end, ok3 := args[2].(types.Int)
	if !ok1 || !ok2 || !ok3 {
		return types.NoSuchOverloadErr()
	}
	if start < 0 || end < start || int64(end) > int64(len(b)) || int64(end) > math.MaxInt32 {
		return types.NewErr("slice(%d, %d): out of range for %d bytes", start, end, len(b))
	}
	return types.Bytes(append([]byte(nil), b[start:end]...))
}
