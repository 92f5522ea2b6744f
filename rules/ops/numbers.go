package ops

import (
	"errors"
	"fmt"
	"math"
	"math/big"

	"github.com/parley-dev/parley/rules/value"
)

// Python's int and float arithmetic over int64 and float64. Python ints are unbounded; an
// int result that does not fit int64 is refused rather than wrapped or silently made float.

var (
	errZeroDiv  = errors.New("division by zero")
	errOverflow = errors.New("integer overflow: result does not fit a 64-bit int")
)

func numberOps() []Op {
	return []Op{
		variadic("NBR_SUM", 1, fold(pyAdd)),
		variadic("NBR_SUBTRACT", 1, fold(pySub)),
		variadic("NBR_MULTIPLY", 1, fold(pyMul)),
		variadic("NBR_DIVIDE", 1, fold(pyTrueDiv)),
		variadic("NBR_FLOOR", 1, fold(pyFloorDiv)),
		variadic("NBR_MODULO", 1, fold(pyMod)),
		variadic("NBR_POWER", 1, fold(pyPow)),
		fixed("NBR_INVERSE_SIGN", 1, -1, func(_ Env, in []value.Value) (value.Value, error) {
			n, err := numbers(in)
			if err != nil {
				return value.Value{}, err
			}
			return pyNeg(n[0])
		}),
		compare("NBR_GREATER", func(c int) bool { return c > 0 }),
		compare("NBR_LOWER", func(c int) bool { return c < 0 }),
		compare("NBR_GREATEREQ", func(c int) bool { return c >= 0 }),
		compare("NBR_LOWEREQ", func(c int) bool { return c <= 0 }),
	}
}

// numbers coerces every input, since rule literals arrive as strings.
func numbers(in []value.Value) ([]value.Value, error) {
	out := make([]value.Value, len(in))
	for i, v := range in {
		n, err := v.Number()
		if err != nil {
			return nil, fmt.Errorf("input %d: %w", i+1, err)
		}
		out[i] = n
	}
	return out, nil
}

// fold applies f left to right, like functools.reduce: one input comes back unchanged.
func fold(f func(a, b value.Value) (value.Value, error)) func(Env, []value.Value) (value.Value, error) {
	return func(_ Env, in []value.Value) (value.Value, error) {
		n, err := numbers(in)
		if err != nil {
			return value.Value{}, err
		}
		acc := n[0]
		for _, x := range n[1:] {
			if acc, err = f(acc, x); err != nil {
				return value.Value{}, err
			}
		}
		return acc, nil
	}
}

func compare(name string, test func(int) bool) Op {
	return fixed(name, 2, -1, func(_ Env, in []value.Value) (value.Value, error) {
		n, err := numbers(in)
		if err != nil {
			return value.Value{}, err
		}
		c, ok := pyCmp(n[0], n[1])
		// Every comparison with nan is false in Python.
		return value.OfBool(ok && test(c)), nil
	})
}

func bothInt(a, b value.Value) bool { return a.Kind() == value.Int && b.Kind() == value.Int }

func intResult(z *big.Int) (value.Value, error) {
	if !z.IsInt64() {
		return value.Value{}, errOverflow
	}
	return value.OfInt(z.Int64()), nil
}

func pyAdd(a, b value.Value) (value.Value, error) {
	if bothInt(a, b) {
		return intResult(new(big.Int).Add(big.NewInt(a.AsInt()), big.NewInt(b.AsInt())))
	}
	return value.OfFloat(a.Float64() + b.Float64()), nil
}

func pySub(a, b value.Value) (value.Value, error) {
	if bothInt(a, b) {
		return intResult(new(big.Int).Sub(big.NewInt(a.AsInt()), big.NewInt(b.AsInt())))
	}
	return value.OfFloat(a.Float64() - b.Float64()), nil
}

func pyMul(a, b value.Value) (value.Value, error) {
	if bothInt(a, b) {
		return intResult(new(big.Int).Mul(big.NewInt(a.AsInt()), big.NewInt(b.AsInt())))
	}
	return value.OfFloat(a.Float64() * b.Float64()), nil
}

func pyNeg(a value.Value) (value.Value, error) {
	if a.Kind() == value.Int {
		if a.AsInt() == math.MinInt64 {
			return value.Value{}, errOverflow
		}
		return value.OfInt(-a.AsInt()), nil
	}
	return value.OfFloat(-a.AsFloat()), nil
}

// pyTrueDiv is Python's /: int/int is the correctly rounded quotient (not float(a)/float(b),
// which double-rounds above 2**53), and dividing by zero raises even for floats.
func pyTrueDiv(a, b value.Value) (value.Value, error) {
	if bothInt(a, b) {
		return intTrueDiv(big.NewInt(a.AsInt()), big.NewInt(b.AsInt()))
	}
	if b.Float64() == 0 {
		return value.Value{}, errZeroDiv
	}
	return value.OfFloat(a.Float64() / b.Float64()), nil
}

func intTrueDiv(a, b *big.Int) (value.Value, error) {
	if b.Sign() == 0 {
		return value.Value{}, errZeroDiv
	}
	if a.Sign() == 0 {
		// CPython gives the zero the sign of the quotient: 0 / -5 is -0.0.
		return value.OfFloat(math.Copysign(0, float64(b.Sign()))), nil
	}
	f, _ := new(big.Rat).SetFrac(a, b).Float64()
	if math.IsInf(f, 0) {
		return value.Value{}, errors.New("integer division result too large for a float")
	}
	return value.OfFloat(f), nil
}

func pyFloorDiv(a, b value.Value) (value.Value, error) {
	if bothInt(a, b) {
		x, y := a.AsInt(), b.AsInt()
		if y == 0 {
			return value.Value{}, errZeroDiv
		}
		if x == math.MinInt64 && y == -1 {
			return value.Value{}, errOverflow
		}
		q := x / y
		if x%y != 0 && (x < 0) != (y < 0) {
			q--
		}
		return value.OfInt(q), nil
	}
	if b.Float64() == 0 {
		return value.Value{}, errZeroDiv
	}
	d, _ := floatDivMod(a.Float64(), b.Float64())
	return value.OfFloat(d), nil
}

func pyMod(a, b value.Value) (value.Value, error) {
	if bothInt(a, b) {
		x, y := a.AsInt(), b.AsInt()
		if y == 0 {
			return value.Value{}, errZeroDiv
		}
		m := x % y
		if m != 0 && (m < 0) != (y < 0) {
			m += y
		}
		return value.OfInt(m), nil
	}
	if b.Float64() == 0 {
		return value.Value{}, errZeroDiv
	}
	_, m := floatDivMod(a.Float64(), b.Float64())
	return value.OfFloat(m), nil
}

// floatDivMod is CPython's _float_div_mod, whose rounding fix-ups decide the last digit.
func floatDivMod(vx, wx float64) (div, mod float64) {
	mod = math.Mod(vx, wx)
	div = (vx - mod) / wx
	if mod != 0 {
		if (wx < 0) != (mod < 0) {
			mod += wx
			div -= 1.0
		}
	} else {
		mod = math.Copysign(0, wx)
	}
	if div != 0 {
		fd := math.Floor(div)
		if div-fd > 0.5 {
			fd += 1.0
		}
		div = fd
	} else {
		div = math.Copysign(0, vx/wx)
	}
	return div, mod
}

// pyPow is Python's **: an int to a non-negative int power stays an int, anything else is
// float pow.
func pyPow(a, b value.Value) (value.Value, error) {
	if bothInt(a, b) && b.AsInt() >= 0 {
		return intPow(a.AsInt(), b.AsInt())
	}
	f, err := floatPow(a.Float64(), b.Float64())
	if err != nil {
		return value.Value{}, err
	}
	return value.OfFloat(f), nil
}

func intPow(x, n int64) (value.Value, error) {
	switch {
	case n == 0 || x == 1:
		return value.OfInt(1), nil
	case x == 0:
		return value.OfInt(0), nil
	case x == -1:
		return value.OfInt(1 - 2*(n&1)), nil
	case n >= 64:
		// |x| >= 2, so the result needs more than 64 bits.
		return value.Value{}, errOverflow
	}
	return intResult(new(big.Int).Exp(big.NewInt(x), big.NewInt(n), nil))
}

// pyCmp compares as Python does: int against float exactly, not after rounding the int.
// ok is false when either side is nan.
func pyCmp(a, b value.Value) (c int, ok bool) {
	if bothInt(a, b) {
		x, y := a.AsInt(), b.AsInt()
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	}
	x, y := a.Float64(), b.Float64()
	if math.IsNaN(x) || math.IsNaN(y) {
		return 0, false
	}
	if a.Kind() == value.Float && b.Kind() == value.Float || math.IsInf(x, 0) || math.IsInf(y, 0) {
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	}
	return exactRat(a).Cmp(exactRat(b)), true
}

// exactRat is the exact value of an int or a finite float (SetFloat64 gives nil for inf and nan).
func exactRat(v value.Value) *big.Rat {
	if v.Kind() == value.Int {
		return new(big.Rat).SetInt64(v.AsInt())
	}
	return new(big.Rat).SetFloat64(v.AsFloat())
}
