package ops

import (
	"errors"
	"math"
	"math/big"
	"sync"
)

// CPython hands pow, log and exp to the C library; glibc's are correctly rounded in all but
// rare hard cases, while Go's math package is only within an ulp or two. To print the same
// last digit, these are computed in 256-bit arithmetic and rounded once.

const bigPrec = 256

var (
	errDomain = errors.New("math domain error")
	errRange  = errors.New("math range error: result too large for a float")
)

func newBig() *big.Float { return new(big.Float).SetPrec(bigPrec) }

// floatPow is CPython's float_pow: its special cases first, then the library pow.
func floatPow(iv, iw float64) (float64, error) {
	switch {
	case iw == 0:
		return 1, nil
	case math.IsNaN(iv):
		return iv, nil
	case math.IsNaN(iw):
		if iv == 1 {
			return 1, nil
		}
		return iw, nil
	case math.IsInf(iw, 0):
		iv = math.Abs(iv)
		switch {
		case iv == 1:
			return 1, nil
		case (iw > 0) == (iv > 1):
			return math.Inf(1), nil
		}
		return 0, nil
	case math.IsInf(iv, 0):
		odd := isOddInteger(iw)
		if iw > 0 {
			if odd {
				return iv, nil
			}
			return math.Abs(iv), nil
		}
		if odd {
			return math.Copysign(0, iv), nil
		}
		return 0, nil
	case iv == 0:
		if iw < 0 {
			return 0, errors.New("0.0 cannot be raised to a negative power")
		}
		if isOddInteger(iw) {
			return iv, nil
		}
		return 0, nil
	}
	negate := false
	if iv < 0 {
		if iw != math.Floor(iw) {
			// Python answers with a complex number, which a value cannot hold.
			return 0, errors.New("negative number raised to a fractional power has a complex result")
		}
		iv = -iv
		negate = isOddInteger(iw)
	}
	r := 1.0
	if iv != 1 {
		var err error
		if r, err = posPow(iv, iw); err != nil {
			return 0, err
		}
	}
	if negate {
		r = -r
	}
	return r, nil
}

func isOddInteger(x float64) bool { return math.Mod(math.Abs(x), 2) == 1 }

// posPow is x**y for finite x > 0, x != 1, finite y != 0.
func posPow(x, y float64) (float64, error) {
	var r float64
	if y == math.Trunc(y) && math.Abs(y) <= 64 {
		// Small integer powers are exact rationals, so even results that fall exactly
		// half-way between two floats round as the C library does.
		p := new(big.Rat).SetFloat64(x)
		n := new(big.Int).Exp(p.Num(), big.NewInt(int64(math.Abs(y))), nil)
		d := new(big.Int).Exp(p.Denom(), big.NewInt(int64(math.Abs(y))), nil)
		if y < 0 {
			n, d = d, n
		}
		r, _ = new(big.Rat).SetFrac(n, d).Float64()
	} else {
		t := bigLog(x)
		t.Mul(t, newBig().SetFloat64(y))
		var err error
		if r, err = bigExpFloat(t); err != nil {
			return 0, err
		}
	}
	if math.IsInf(r, 0) {
		return 0, errRange
	}
	return r, nil
}

// pyLog is math.log of one argument.
func pyLog(x float64) (float64, error) {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 1):
		return x, nil
	case x <= 0:
		return 0, errDomain
	}
	f, _ := bigLog(x).Float64()
	return f, nil
}

// pyExp is math.exp.
func pyExp(x float64) (float64, error) {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 1):
		return x, nil
	case math.IsInf(x, -1):
		return 0, nil
	}
	return bigExpFloat(newBig().SetFloat64(x))
}

// bigExpFloat rounds exp(t) to a float, failing on overflow like the C library.
func bigExpFloat(t *big.Float) (float64, error) {
	// Beyond these, exp overflows or underflows float64 whatever t's low bits are.
	if t.Cmp(big.NewFloat(710)) > 0 {
		return 0, errRange
	}
	if t.Cmp(big.NewFloat(-746)) < 0 {
		return 0, nil
	}
	f, _ := bigExp(t).Float64()
	if math.IsInf(f, 0) {
		return 0, errRange
	}
	return f, nil
}

var ln2 = sync.OnceValue(func() *big.Float {
	third := newBig().Quo(newBig().SetInt64(1), newBig().SetInt64(3))
	return logRatio(third) // log((1+1/3)/(1-1/3)) = log 2
})

// bigLog is log(x) for finite x > 0.
func bigLog(x float64) *big.Float {
	m, e := math.Frexp(x)
	// m in [1/sqrt2, sqrt2) keeps the series argument below 0.18.
	if m < math.Sqrt2/2 {
		m *= 2
		e--
	}
	bm := newBig().SetFloat64(m)
	z := newBig().Quo(newBig().Sub(bm, newBig().SetInt64(1)), newBig().Add(bm, newBig().SetInt64(1)))
	r := logRatio(z)
	return r.Add(r, newBig().Mul(ln2(), newBig().SetInt64(int64(e))))
}

// logRatio is log((1+z)/(1-z)) = 2*(z + z**3/3 + z**5/5 + ...), for small |z|.
func logRatio(z *big.Float) *big.Float {
	sum := newBig().Set(z)
	if z.Sign() == 0 {
		return sum
	}
	z2 := newBig().Mul(z, z)
	pow := newBig().Set(z)
	for k := int64(3); ; k += 2 {
		pow.Mul(pow, z2)
		term := newBig().Quo(pow, newBig().SetInt64(k))
		if term.Sign() == 0 || term.MantExp(nil) < sum.MantExp(nil)-bigPrec-8 {
			break
		}
		sum.Add(sum, term)
	}
	return sum.Mul(sum, newBig().SetInt64(2))
}

// bigExp is exp(t) for |t| <= 746.
func bigExp(t *big.Float) *big.Float {
	const halvings = 12
	kf, _ := newBig().Quo(t, ln2()).Float64()
	k := math.Round(kf)
	r := newBig().Sub(t, newBig().Mul(ln2(), newBig().SetFloat64(k)))
	r.SetMantExp(r, -halvings)
	sum := newBig().SetInt64(1)
	term := newBig().SetInt64(1)
	for n := int64(1); ; n++ {
		term.Mul(term, r)
		term.Quo(term, newBig().SetInt64(n))
		if term.Sign() == 0 || term.MantExp(nil) < -bigPrec-8 {
			break
		}
		sum.Add(sum, term)
	}
	for i := 0; i < halvings; i++ {
		sum.Mul(sum, sum)
	}
	return sum.SetMantExp(sum, int(k))
}

// fsum is math.fsum: the correctly rounded sum, with CPython's handling of inf and nan.
func fsum(xs []float64) (float64, error) {
	total := new(big.Rat)
	special, infSum := 0.0, 0.0
	haveSpecial := false
	for _, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			haveSpecial = true
			if math.IsInf(x, 0) {
				infSum += x
			}
			special += x
			continue
		}
		total.Add(total, new(big.Rat).SetFloat64(x))
	}
	if haveSpecial {
		if math.IsNaN(infSum) {
			return 0, errors.New("-inf + inf in fsum")
		}
		return special, nil
	}
	f, _ := total.Float64()
	if math.IsInf(f, 0) {
		return 0, errors.New("intermediate overflow in fsum")
	}
	return f, nil
}

// floatSqrtOfFrac is statistics._float_sqrt_of_frac: sqrt(n/m) correctly rounded, for
// n >= 0 and m > 0.
func floatSqrtOfFrac(n, m *big.Int) (float64, error) {
	const sqrtBitWidth = 2*53 + 3
	q := floorDiv(n.BitLen()-m.BitLen()-sqrtBitWidth, 2)
	var num, den *big.Int
	if q >= 0 {
		num = isqrtFracRTO(n, new(big.Int).Lsh(m, uint(2*q)))
		num.Lsh(num, uint(q))
		den = big.NewInt(1)
	} else {
		num = isqrtFracRTO(new(big.Int).Lsh(n, uint(-2*q)), m)
		den = new(big.Int).Lsh(big.NewInt(1), uint(-q))
	}
	v, err := intTrueDiv(num, den)
	if err != nil {
		return 0, err
	}
	return v.AsFloat(), nil
}

// isqrtFracRTO is sqrt(n/m) rounded to an integer with round-to-odd.
func isqrtFracRTO(n, m *big.Int) *big.Int {
	a := new(big.Int).Sqrt(new(big.Int).Quo(n, m))
	check := new(big.Int).Mul(a, a)
	check.Mul(check, m)
	if check.Cmp(n) != 0 {
		a.SetBit(a, 0, 1)
	}
	return a
}

func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
