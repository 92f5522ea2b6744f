package lope

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
)

// Lope's regexes are Python's `re`; Parley's are Go's RE2. This file rewrites what has the
// same meaning in both, and refuses (with the reason) what RE2 cannot run: lookarounds in
// general, backreferences, atomic groups, possessive quantifiers, conditionals.

// regexUse says what a regex is for, which decides which rewrites keep its meaning.
type regexUse int

const (
	// matchUse: rule and group regexes; only whether the regex is found matters, so zero-width
	// assertions at the edges may consume text.
	matchUse regexUse = iota
	// captureUse: capturing_data; Lope stores the whole match, Parley stores group 1 when the
	// regex has groups, else the whole match.
	captureUse
	// valueUse: operation inputs (STR_MATCH, STR_CAPTURE, STR_REPLACE); only the lexical
	// rewrites, which never change what is matched.
	valueUse
)

// regex converts the Lope regex at path, plain or base64, and notes what it rewrote. An
// error says why it cannot be carried over; the caller reports what is left out with it.
func (c *converter) regex(path, expr string, b64 bool, use regexUse) (string, error) {
	src := expr
	if b64 {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(expr))
		if err != nil {
			return "", fmt.Errorf("not valid base64: %v", err)
		}
		src = c.codec.Decode(raw)
	}
	if src == "" {
		return "", fmt.Errorf("empty regex")
	}
	translated, note, err := translateRegex(src, use)
	if err != nil {
		return "", err
	}
	if note != "" {
		c.note(path, "%s", note)
	}
	switch {
	case !b64:
		return translated, nil
	case translated == src:
		return expr, nil
	}
	return base64.StdEncoding.EncodeToString(c.codec.AppendEncode(nil, translated)), nil
}

// translateRegex rewrites a Python regex for RE2 and compiles it; note describes a rewrite
// a user should know about.
func translateRegex(expr string, use regexUse) (out, note string, err error) {
	out = lexRewrite(expr, use)
	if use != valueUse {
		out, note = edgeRewrite(out, use)
	}
	if _, cerr := regexp.Compile(out); cerr != nil {
		return "", "", fmt.Errorf("RE2 cannot run `%s`: %s", expr, explainRegex(expr, cerr))
	}
	return out, note, nil
}

var multilineFlag = regexp.MustCompile(`\(\?[a-zA-Z]*m[a-zA-Z-]*[:)]`)

// lexRewrite makes the token-level translations: \Z → \z, \uXXXX → \x{XXXX}, [\b] → [\x08],
// {,n} → {0,n}, (?#comment) removed, Python-only flags a/u/L removed, and (for matchUse) a
// final `$` made to match before a trailing newline as Python's does.
func lexRewrite(expr string, use regexUse) string {
	multiline := multilineFlag.MatchString(expr)
	var b strings.Builder
	inClass := false
	for i := 0; i < len(expr); i++ {
		ch := expr[i]
		switch {
		case ch == '\\' && i+1 < len(expr):
			next := expr[i+1]
			switch {
			case next == 'Z' && !inClass:
				b.WriteString(`\z`)
			case next == 'b' && inClass:
				b.WriteString(`\x08`)
			case next == 'u' && isHex(expr, i+2, 4):
				fmt.Fprintf(&b, `\x{%s}`, expr[i+2:i+6])
				i += 4
			case next == 'U' && isHex(expr, i+2, 8):
				fmt.Fprintf(&b, `\x{%s}`, expr[i+2:i+10])
				i += 8
			default:
				b.WriteByte(ch)
				b.WriteByte(next)
			}
			i++
		case inClass:
			if ch == ']' {
				inClass = false
			}
			b.WriteByte(ch)
		case ch == '[':
			inClass = true
			b.WriteByte(ch)
			// A ] right after [ or [^ is a literal in both dialects.
			if strings.HasPrefix(expr[i+1:], "^]") {
				b.WriteString("^]")
				i += 2
			} else if strings.HasPrefix(expr[i+1:], "]") {
				b.WriteByte(']')
				i++
			}
		case strings.HasPrefix(expr[i:], "(?#"):
			end := strings.IndexByte(expr[i:], ')')
			if end < 0 {
				b.WriteString(expr[i:])
				return b.String()
			}
			i += end
		case strings.HasPrefix(expr[i:], "(?"):
			n, text := pythonFlags(expr[i:])
			b.WriteString(text)
			i += n - 1
		case ch == '{' && len(expr) > i+1 && expr[i+1] == ',':
			if j := strings.IndexByte(expr[i:], '}'); j > 2 && isDigits(expr[i+2:i+j]) {
				b.WriteString("{0")
			} else {
				b.WriteByte(ch)
			}
		case ch == '$' && use == matchUse && !multiline && endsHere(expr, i+1):
			b.WriteString(`\n?\z`)
		default:
			b.WriteByte(ch)
		}
	}
	return b.String()
}

// pythonFlags handles a group opening with (?: inline flags lose a, u and L (Python 3's
// defaults or meaningless in RE2), a group left with no flag disappears. It returns how many
// bytes of s it consumed and their translation.
func pythonFlags(s string) (int, string) {
	j := 2
	for j < len(s) && strings.IndexByte("aiLmsux-", s[j]) >= 0 {
		j++
	}
	if j == 2 || j >= len(s) || (s[j] != ')' && s[j] != ':') {
		return 2, "(?"
	}
	flags := strings.NewReplacer("a", "", "u", "", "L", "").Replace(s[2:j])
	if flags == "" || flags == "-" {
		if s[j] == ')' {
			return j + 1, ""
		}
		return j + 1, "(?:"
	}
	return j + 1, "(?" + flags + s[j:j+1]
}

// endsHere says whether position i ends a branch: the end, `)` or `|`.
func endsHere(s string, i int) bool {
	return i >= len(s) || s[i] == ')' || s[i] == '|'
}

func isHex(s string, at, n int) bool {
	if at+n > len(s) {
		return false
	}
	for _, r := range s[at : at+n] {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

var backreference = regexp.MustCompile(`\\[1-9]|\(\?P=`)

// explainRegex names the Python feature RE2 refused.
func explainRegex(expr string, err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "`(?<=") || strings.Contains(msg, "`(?<!") || strings.Contains(msg, "`(?=") || strings.Contains(msg, "`(?!"):
		return "lookarounds are not supported (only a lookbehind at the very start or a lookahead at the very end can be rewritten); match or capture with a group instead"
	case backreference.MatchString(expr) && (strings.Contains(msg, "invalid escape sequence: `\\") || strings.Contains(msg, "`(?P")):
		return "backreferences are not supported"
	case strings.Contains(msg, "`(?>"):
		return "atomic groups are not supported (nor needed: RE2 never backtracks)"
	case strings.Contains(msg, "invalid nested repetition operator") && strings.HasSuffix(strings.TrimSuffix(msg, "`"), "+"):
		return "possessive quantifiers are not supported (nor needed: RE2 never backtracks); drop the extra +"
	case strings.Contains(msg, "`(?("):
		return "conditional groups are not supported"
	case strings.Contains(msg, "`(?x"):
		return "verbose mode (?x) is not supported; remove the spaces and comments"
	case strings.Contains(msg, "invalid repeat count"):
		return "a repeat count is at most 1000: " + msg
	}
	return msg
}

// pythonReplacement turns a Python re.sub replacement into a Go regexp template:
// \1 and \g<1> become ${1}, \g<name> becomes ${name}, $ becomes $$, and the escapes Python
// processes (\n, \t, \\ ...) become the characters.
func pythonReplacement(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch == '$' {
			b.WriteString("$$")
			continue
		}
		if ch != '\\' || i+1 == len(s) {
			b.WriteByte(ch)
			continue
		}
		next := s[i+1]
		switch {
		case next == 'g' && i+2 < len(s) && s[i+2] == '<':
			if j := strings.IndexByte(s[i+3:], '>'); j > 0 {
				b.WriteString("${" + s[i+3:i+3+j] + "}")
				i += 3 + j
				continue
			}
			b.WriteString(`\g`)
		case next >= '1' && next <= '9':
			n := s[i+1 : i+2]
			if i+2 < len(s) && s[i+2] >= '0' && s[i+2] <= '9' {
				n = s[i+1 : i+3]
			}
			b.WriteString("${" + n + "}")
			i += len(n)
			continue
		case strings.IndexByte(`\ntrfva0`, next) >= 0:
			b.WriteByte(map[byte]byte{'\\': '\\', 'n': '\n', 't': '\t', 'r': '\r', 'f': '\f', 'v': '\v', 'a': '\a', '0': 0}[next])
		default:
			// Python keeps unknown escapes of punctuation as they are.
			b.WriteByte('\\')
			b.WriteByte(next)
		}
		i++
	}
	return b.String()
}
