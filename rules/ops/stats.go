package ops

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"

	"github.com/parley-dev/parley/rules/value"
)

// Python 3.11's statistics module, function by function. It sums exactly with fractions and
// converts once at the end (_sum, _ss, _convert), so the float results here are exact
// rationals rounded once, and the result type follows its rule: int when every input is an
// int and the exact result is whole, float otherwise.

func statsOps() []Op {
	return []Op{
		variadic("NBR_MEAN", 1, stat(mean)),
		variadic("NBR_GEOMETRIC_MEAN", 1, stat(geometricMean)),
		variadic("NBR_HARMONIC_MEAN", 1, stat(harmonicMean)),
		variadic("NBR_MEDIAN", 1, stat(median)),
		variadic("NBR_MEDIAN_LOW", 1, stat(func(d []value.Value) (value.Value, error) {
			d = pySorted(d)
			return d[(len(d)-1)/2], nil
		})),
		variadic("NBR_MEDIAN_HIGH", 1, stat(func(d []value.Value) (value.Value, error) {
			d = pySorted(d)
			return d[len(d)/2], nil
		})),
		variadic("NBR_MEDIAN_GROUPED", 1, stat(medianGrouped)),
		variadic("NBR_MODE", 1, stat(mode)),
		variadic("NBR_POP_STD_DEV", 1, stat(func(d []value.Value) (value.Value, error) { return stdev(d, 0) })),
		variadic("NBR_STD_DEV", 2, stat(func(d []value.Value) (value.Value, error) { return stdev(d, 1) })),
		variadic("NBR_POP_VAR", 1, stat(func(d []value.Value) (value.Value, error) { return variance(d, 0) })),
		variadic("NBR_VAR", 2, stat(func(d []value.Value) (value.Value, error) { return variance(d, 1) })),
	}
}

func stat(f func([]value.Value) (value.Value, error)) func(Env, []value.Value) (value.Value, error) {
	return func(_ Env, in []value.Value) (value.Value, error) {
		d, err := numbers(in)
		if err != nil {
			return value.Value{}, err
		}
		if len(d) == 0 {
			return value.Value{}, errors.New("no data")
		}
		return f(d)
	}
}

// exactSum is statistics._sum. Non-finite inputs cannot be fractions: Python then keeps the
// float sum of just those (special) and ignores the rest.
type exactSum struct {
	anyFloat   bool     // the type T is float rather than int
	special    bool     // some input was inf or nan
	specialSum float64  // their float sum, when special
	sum, sumSq *big.Rat // exact sums of x and x*x, when not special
}

func sumOf(d []value.Value) exactSum {
	s := exactSum{sum: new(big.Rat), sumSq: new(big.Rat)}
	for _, x := range d {
		if x.Kind() == value.Float {
			s.anyFloat = true
			if f := x.AsFloat(); math.IsNaN(f) || math.IsInf(f, 0) {
				s.special = true
				s.specialSum += f
				continue
			}
		}
		r := exactRat(x)
		s.sum.Add(s.sum, r)
		s.sumSq.Add(s.sumSq, r.Mul(r, r))
	}
	return s
}

// convert is statistics._convert.
func convert(q *big.Rat, anyFloat bool) (value.Value, error) {
	if !anyFloat && q.IsInt() {
		return intResult(q.Num())
	}
	f, _ := q.Float64()
	if math.IsInf(f, 0) {
		return value.Value{}, errors.New("result too large for a float")
	}
	return value.OfFloat(f), nil
}

func ratInt(n int) *big.Rat { return new(big.Rat).SetInt64(int64(n)) }

func mean(d []value.Value) (value.Value, error) {
	s := sumOf(d)
	if s.special {
		return value.OfFloat(s.specialSum / float64(len(d))), nil
	}
	return convert(s.sum.Quo(s.sum, ratInt(len(d))), s.anyFloat)
}

// geometricMean is exp(fmean(map(log, data))): not exact in Python either, but with
// correctly rounded log, fsum and exp it lands on the same float.
func geometricMean(d []value.Value) (value.Value, error) {
	logs := make([]float64, len(d))
	for i, x := range d {
		l, err := pyLog(x.Float64())
		if err != nil {
			return value.Value{}, errors.New("geometric mean requires a non-empty dataset containing positive numbers")
		}
		logs[i] = l
	}
	total, err := fsum(logs)
	if err != nil {
		return value.Value{}, errors.New("geometric mean requires a non-empty dataset containing positive numbers")
	}
	r, err := pyExp(total / float64(len(d)))
	if err != nil {
		return value.Value{}, err
	}
	return value.OfFloat(r), nil
}

func harmonicMean(d []value.Value) (value.Value, error) {
	neg := errors.New("harmonic mean does not support negative values")
	if len(d) == 1 {
		// Python returns the single value itself, int or float.
		if c, ok := pyCmp(d[0], value.OfInt(0)); ok && c < 0 {
			return value.Value{}, neg
		}
		return d[0], nil
	}
	// Python checks and inverts lazily, so a zero before a negative value wins: it returns
	// the int 0 before ever seeing the negative one.
	inv := make([]value.Value, len(d))
	for i, x := range d {
		if c, ok := pyCmp(x, value.OfInt(0)); ok && c < 0 {
			return value.Value{}, neg
		}
		if x.Float64() == 0 {
			return value.OfInt(0), nil
		}
		v, err := pyTrueDiv(value.OfInt(1), x)
		if err != nil {
			return value.Value{}, err
		}
		inv[i] = v
	}
	// Every 1/x is a float, so the result is always a float.
	s := sumOf(inv)
	if s.special {
		if s.specialSum <= 0 {
			return value.Value{}, errors.New("weighted sum must be positive")
		}
		return value.OfFloat(float64(len(d)) / s.specialSum), nil
	}
	if s.sum.Sign() <= 0 {
		return value.Value{}, errors.New("weighted sum must be positive")
	}
	return convert(new(big.Rat).Quo(ratInt(len(d)), s.sum), true)
}

func median(d []value.Value) (value.Value, error) {
	d = pySorted(d)
	n := len(d)
	if n%2 == 1 {
		return d[n/2], nil
	}
	a, b := d[n/2-1], d[n/2]
	if bothInt(a, b) {
		// The sum of two int64s may not fit one; Python's exact ints don't care.
		return intTrueDiv(new(big.Int).Add(big.NewInt(a.AsInt()), big.NewInt(b.AsInt())), big.NewInt(2))
	}
	return value.OfFloat((a.Float64() + b.Float64()) / 2), nil
}

func medianGrouped(d []value.Value) (value.Value, error) {
	d = pySorted(d)
	n := len(d)
	x := d[n/2]
	i := bisectLeft(d, x)
	j := bisectRight(d, x, i)
	if j == i {
		// Only nan can confuse the bisection this far; Python then divides by zero.
		return value.Value{}, errZeroDiv
	}
	const interval = 1.0
	lower := x.Float64() - interval/2.0
	// Same operations in the same order as Python, so the rounding matches.
	return value.OfFloat(lower + interval*(float64(n)/2-float64(i))/float64(j-i)), nil
}

// mode is Counter(data).most_common(1): the highest count, first seen among ties, keyed by
// Python equality (1 == 1.0, nan equal to nothing) and returning the first value seen.
func mode(d []value.Value) (value.Value, error) {
	counts := make(map[string]int, len(d))
	var order []int // index in d of each distinct key's first occurrence
	var keys []string
	for i, x := range d {
		k, ok := eqKey(x)
		if !ok {
			k = "nan" + strconv.Itoa(i)
		}
		if counts[k] == 0 {
			order = append(order, i)
			keys = append(keys, k)
		}
		counts[k]++
	}
	best := 0
	for j := range keys {
		if counts[keys[j]] > counts[keys[best]] {
			best = j
		}
	}
	return d[order[best]], nil
}

// eqKey gives numbers that are == in Python the same key; nan has none.
func eqKey(v value.Value) (string, bool) {
	if v.Kind() == value.Int {
		return "i" + strconv.FormatInt(v.AsInt(), 10), true
	}
	f := v.AsFloat()
	switch {
	case math.IsNaN(f):
		return "", false
	case f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63:
		return "i" + strconv.FormatInt(int64(f), 10), true
	}
	return "f" + strconv.FormatUint(math.Float64bits(f), 16), true
}

// variance is pvariance (ddof 0) or variance (ddof 1).
func variance(d []value.Value, ddof int) (value.Value, error) {
	if len(d) <= ddof {
		return value.Value{}, errors.New("variance requires at least two data points")
	}
	s := sumOf(d)
	if s.special {
		return value.OfFloat(s.specialSum / float64(len(d)-ddof)), nil
	}
	return convert(sumSquares(s, len(d), ddof), s.anyFloat)
}

// stdev is pstdev (ddof 0) or stdev (ddof 1).
func stdev(d []value.Value, ddof int) (value.Value, error) {
	if len(d) <= ddof {
		return value.Value{}, errors.New("stdev requires at least two data points")
	}
	s := sumOf(d)
	if s.special {
		// Python 3.11 fails here too (AttributeError: a float has no numerator).
		return value.Value{}, fmt.Errorf("standard deviation of inf or nan (%v)", s.specialSum)
	}
	q := sumSquares(s, len(d), ddof)
	f, err := floatSqrtOfFrac(q.Num(), q.Denom())
	if err != nil {
		return value.Value{}, err
	}
	return value.OfFloat(f), nil
}

// sumSquares is the exact sum of squared deviations from the mean over n - ddof.
func sumSquares(s exactSum, n, ddof int) *big.Rat {
	sq := new(big.Rat).Mul(s.sum, s.sum)
	sq.Quo(sq, ratInt(n))
	ss := new(big.Rat).Sub(s.sumSq, sq)
	return ss.Quo(ss, ratInt(n-ddof))
}

func pyLess(a, b value.Value) bool {
	c, ok := pyCmp(a, b)
	return ok && c < 0
}

// pySorted is sorted(data). Below 64 items CPython's list.sort is a run count followed by
// binary insertion, reproduced here step by step so that even nan, which breaks the order,
// lands where Python puts it; longer lists use a stable sort, the same result without nan.
func pySorted(d []value.Value) []value.Value {
	a := append([]value.Value(nil), d...)
	if len(a) >= 64 {
		sort.SliceStable(a, func(i, j int) bool { return pyLess(a[i], a[j]) })
		return a
	}
	if len(a) < 2 {
		return a
	}
	run := 2
	if pyLess(a[1], a[0]) {
		for run < len(a) && pyLess(a[run], a[run-1]) {
			run++
		}
		for i, j := 0, run-1; i < j; i, j = i+1, j-1 {
			a[i], a[j] = a[j], a[i]
		}
	} else {
		for run < len(a) && !pyLess(a[run], a[run-1]) {
			run++
		}
	}
	for start := run; start < len(a); start++ {
		pivot := a[start]
		l, r := 0, start
		for l < r {
			p := l + (r-l)>>1
			if pyLess(pivot, a[p]) {
				r = p
			} else {
				l = p + 1
			}
		}
		copy(a[l+1:start+1], a[l:start])
		a[l] = pivot
	}
	return a
}

func bisectLeft(a []value.Value, x value.Value) int {
	lo, hi := 0, len(a)
	for lo < hi {
		mid := (lo + hi) / 2
		if pyLess(a[mid], x) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

func bisectRight(a []value.Value, x value.Value, lo int) int {
	hi := len(a)
	for lo < hi {
		mid := (lo + hi) / 2
		if pyLess(x, a[mid]) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}
