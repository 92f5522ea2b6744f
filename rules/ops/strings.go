package ops

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/language"

	"github.com/parley-dev/parley/rules/codec"
	"github.com/parley-dev/parley/rules/value"
)

func stringOps() []Op {
	split := Op{Name: "STR_SPLIT", MinInputs: 2, MaxInputs: 2, MinOutputs: 1, MaxOutputs: -1, RegexInput: -1, Run: strSplit}
	return []Op{
		variadic("STR_CONCAT", 1, strConcat),
		fixed("STR_REPLACE", 3, 1, strReplace),
		fixed("STR_SUBTRACT", 2, -1, func(_ Env, in []value.Value) (value.Value, error) {
			return value.OfString(strings.ReplaceAll(in[0].String(), in[1].String(), "")), nil
		}),
		fixed("STR_UPPER", 1, -1, func(_ Env, in []value.Value) (value.Value, error) {
			// cases does Python's full mapping ("ß" → "SS"); a Caser is not safe to share.
			return value.OfString(cases.Upper(language.Und).String(in[0].String())), nil
		}),
		fixed("STR_LOWER", 1, -1, func(_ Env, in []value.Value) (value.Value, error) {
			return value.OfString(cases.Lower(language.Und).String(in[0].String())), nil
		}),
		fixed("STR_TRIM", 1, -1, func(_ Env, in []value.Value) (value.Value, error) {
			return value.OfString(strings.TrimFunc(in[0].String(), pySpace)), nil
		}),
		split,
		fixed("STR_MATCH", 2, 1, strMatch),
		fixed("STR_CAPTURE", 2, 1, strCapture),
		fixed("STR_COUNT", 1, -1, func(_ Env, in []value.Value) (value.Value, error) {
			return value.OfInt(int64(utf8.RuneCountInString(in[0].String()))), nil
		}),
		variadic("STR_MODE", 1, strMode),
		fixed("STR_ENCODE_B64", 1, -1, func(env Env, in []value.Value) (value.Value, error) {
			return value.OfString(base64.StdEncoding.EncodeToString(encode(env, in[0].String()))), nil
		}),
		fixed("STR_DECODE_B64", 1, -1, func(env Env, in []value.Value) (value.Value, error) {
			b, err := base64.StdEncoding.DecodeString(in[0].String())
			if err != nil {
				return value.Value{}, fmt.Errorf("invalid base64: %w", err)
			}
			return value.OfString(decode(env, b)), nil
		}),
		fixed("STR_ENCODE_HEX", 1, -1, func(env Env, in []value.Value) (value.Value, error) {
			return value.OfString(hex.EncodeToString(encode(env, in[0].String()))), nil
		}),
		fixed("STR_DECODE_HEX", 1, -1, func(env Env, in []value.Value) (value.Value, error) {
			b, err := hex.DecodeString(in[0].String())
			if err != nil {
				return value.Value{}, fmt.Errorf("invalid hex: %w", err)
			}
			return value.OfString(decode(env, b)), nil
		}),
	}
}

func strConcat(_ Env, in []value.Value) (value.Value, error) {
	var b strings.Builder
	for _, v := range in {
		b.WriteString(v.String())
	}
	return value.OfString(b.String()), nil
}

func strReplace(_ Env, in []value.Value) (value.Value, error) {
	re, err := compile(in[1].String())
	if err != nil {
		return value.Value{}, err
	}
	return value.OfString(re.ReplaceAllString(in[0].String(), in[2].String())), nil
}

func strSplit(_ Env, in []value.Value, nOut int) ([]value.Value, error) {
	sep := in[1].String()
	if sep == "" {
		return nil, errors.New("empty separator")
	}
	// SplitN keeps the work bounded by the outputs wanted, not by the input.
	pieces := strings.SplitN(in[0].String(), sep, nOut+1)
	out := make([]value.Value, nOut)
	for i := range out {
		if i < len(pieces) {
			out[i] = value.OfString(pieces[i])
		} else {
			out[i] = value.OfString("")
		}
	}
	return out, nil
}

func strMatch(_ Env, in []value.Value) (value.Value, error) {
	re, err := compile(in[1].String())
	if err != nil {
		return value.Value{}, err
	}
	return value.OfBool(re.MatchString(in[0].String())), nil
}

func strCapture(_ Env, in []value.Value) (value.Value, error) {
	re, err := compile(in[1].String())
	if err != nil {
		return value.Value{}, err
	}
	m := re.FindStringSubmatchIndex(in[0].String())
	g := 0
	if re.NumSubexp() > 0 {
		g = 1
	}
	// A group that did not take part in the match is None in Python; we print it empty.
	if m == nil || m[2*g] < 0 {
		return value.OfString(""), nil
	}
	return value.OfString(in[0].String()[m[2*g]:m[2*g+1]]), nil
}

func strMode(_ Env, in []value.Value) (value.Value, error) {
	counts := make(map[string]int, len(in))
	var order []string
	for _, v := range in {
		s := v.String()
		if counts[s] == 0 {
			order = append(order, s)
		}
		counts[s]++
	}
	// The first value seen wins among equal counts, as with Counter.most_common in Python.
	best := order[0]
	for _, s := range order[1:] {
		if counts[s] > counts[best] {
			best = s
		}
	}
	return value.OfString(best), nil
}

// pySpace is Python's str.isspace(): Go's unicode.IsSpace plus the ASCII separators
// U+001C..U+001F.
func pySpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', 0x1c, 0x1d, 0x1e, 0x1f, ' ', 0x85, 0xa0, 0x1680,
		0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}

func encode(env Env, s string) []byte {
	if env.Codec == nil {
		return []byte(s)
	}
	return codec.Encode(env.Codec, s)
}

func decode(env Env, b []byte) string {
	if env.Codec == nil {
		return string(b)
	}
	return env.Codec.Decode(b)
}

// Regexes often come from variables, so they are compiled at run time; the cache spares
// recompiling the same few patterns on every message, and is dropped whole when full.
var reCache struct {
	sync.Mutex
	m map[string]*regexp.Regexp
}

const reCacheMax = 256

func compile(expr string) (*regexp.Regexp, error) {
	reCache.Lock()
	re, ok := reCache.m[expr]
	reCache.Unlock()
	if ok {
		return re, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("bad regular expression: %w", err)
	}
	reCache.Lock()
	if reCache.m == nil || len(reCache.m) >= reCacheMax {
		reCache.m = make(map[string]*regexp.Regexp)
	}
	reCache.m[expr] = re
	reCache.Unlock()
	return re, nil
}
