package rules

import (
	"fmt"
	"reflect"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// Warning is something that compiles but will silently never work as written.
type Warning struct {
	// Field is the path under "spec", as compile errors have it.
	Field   string
	Message string
}

func (w Warning) String() string { return w.Field + ": " + w.Message }

// udpAmplification is the connector's default cap on bytes sent per byte received before a
// UDP peer sends a second datagram; greetingRequestBytes is the first datagram a greeting
// may ask for before a warning: a few bytes more than most protocols' opening request.
const (
	udpAmplification     = 3
	greetingRequestBytes = 32
)

// Lint warns of what compiles but will not work as written: regexes that cannot match any
// input the operation produces, a UDP greeting the amplification guard holds back, and
// closeAfterReplying whose state cannot survive between requests. spec must have compiled
// into p.
func Lint(spec *v1alpha1.ConversationRulesSpec, p *Program) []Warning {
	var ws []Warning
	add := func(path *field.Path, format string, args ...any) {
		ws = append(ws, Warning{Field: path.String(), Message: fmt.Sprintf(format, args...)})
	}
	root := field.NewPath("spec")
	op := root.Child("operation")

	if p.Transport == v1alpha1.TransportUDP && p.Mode == v1alpha1.ModeServer {
		if g := spec.Conversation.Greetings; g != nil && (g.Enabled == nil || *g.Enabled) {
			n := len(g.Value)
			if need := (n + udpAmplification - 1) / udpAmplification; need > greetingRequestBytes {
				add(root.Child("conversation", "greetings", "value"),
					"a %d-byte greeting goes out only to peers whose first datagram has at least %d bytes: a UDP server sends at most %d times what a peer sent before its second datagram (the reflection guard)",
					n, need, udpAmplification)
			}
		}
	}
	if q := p.ConnectionQueue; q > 0 && p.Mode == v1alpha1.ModeServer && p.Transport == v1alpha1.TransportTCP && q < p.MaxConnections {
		add(op.Child("connectionQueue"),
			"a backlog of %d cannot hold a burst of the %d peers maxConcurrentConnections allows: the kernel drops the SYNs beyond it and those peers wait 1 s or more before they retry; leave connectionQueue unset for the system's maximum",
			q, p.MaxConnections)
	}
	if p.CloseAfterReplying && p.Session == nil {
		switch {
		case p.IdentifyByAddress:
			add(op.Child("socket", "closeAfterReplying"),
				"each request comes on a new socket, and with identifyBy: Address each socket is a new conversation: memory and pending async rules are lost between requests; use identifyBy: IP or a session")
		case p.InteractionTimeout == 0:
			add(op.Child("socket", "closeAfterReplying"),
				"without interactionTimeout a conversation ends when its socket closes: memory is lost between requests; set an interactionTimeout for it to wait for the next one")
		}
	}
	delims := delimiters(p)
	lintRegex := func(path *field.Path, expr string, isBase64 bool) {
		if isBase64 || expr == "" {
			return
		}
		re, err := syntax.Parse(expr, syntax.Perl)
		if err != nil {
			return // compile has said so
		}
		if lit, anchor, ok := endAnchorMismatch(re, delims); ok {
			add(path, "%q must end right at %s, but with Delimiter framing every input ends with its delimiter (%s): the regex never matches (except on what remains when the peer closes); let the delimiter come before the anchor (\\r?$ for \"\\r\\n\") or drop the anchor",
				lit, anchorWhere(anchor), quoteAll(delims))
			return
		}
		if max := maxLiteralRune(p.Encoding); max >= 0 {
			if r, ok := runeAbove(re, max); ok {
				add(path, "%q can never be in an input decoded as %s (at most U+%04X): the regex never matches", r, p.Encoding, max)
				return
			}
		}
		if p.MaxInputSize > 0 {
			if n := minRunes(re); n > p.MaxInputSize {
				add(path, "matches at least %d characters but an input holds at most %d bytes (maxInputSize): the regex never matches", n, p.MaxInputSize)
			}
		}
	}
	lintRules := func(path *field.Path, rs []v1alpha1.Rule) {
		for i, r := range rs {
			lintRegex(path.Index(i).Child("regex"), r.Regex, r.RegexBase64)
		}
	}
	conv := root.Child("conversation")
	lintRules(conv.Child("rules"), spec.Conversation.Rules)
	for i, g := range spec.Conversation.Groups {
		gp := conv.Child("groups").Index(i)
		lintRegex(gp.Child("regex"), g.Regex, false)
		lintRules(gp.Child("rules"), g.Rules)
	}
	return ws
}

// delimiters lists, as text, the delimiter of every framing p's inputs may be cut with,
// when all of them are Delimiter framings; nil otherwise (Read and the other framings may
// end an input anywhere).
func delimiters(p *Program) []string {
	if p.Transport != v1alpha1.TransportTCP || p.Framing == nil {
		return nil
	}
	fs := []*Framing{p.Framing}
	for _, r := range p.Rules {
		fs = append(fs, r.Framing)
	}
	for _, g := range p.Groups {
		for _, r := range g.Rules {
			fs = append(fs, r.Framing)
		}
	}
	var ds []string
	for _, f := range fs {
		if f == nil {
			continue
		}
		if f.Type != v1alpha1.FramingDelimiter || len(f.Delimiter) == 0 {
			return nil
		}
		if d := p.Codec.Decode(f.Delimiter); !slices.Contains(ds, d) {
			ds = append(ds, d)
		}
	}
	return ds
}

// endAnchorMismatch finds, in re or one of its top-level alternatives, a literal that must
// end right at the end of the input (`\z`, or `$`, which also matches before a final "\n",
// docs/rules.md section 5) where no delimiter of ds can end an input. It names the anchor.
func endAnchorMismatch(re *syntax.Regexp, ds []string) (lit, anchor string, ok bool) {
	if len(ds) == 0 {
		return "", "", false
	}
	if re.Op == syntax.OpAlternate {
		for _, sub := range re.Sub {
			if lit, anchor, ok := endAnchorMismatch(sub, ds); ok {
				return lit, anchor, true
			}
		}
		return "", "", false
	}
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 {
		return "", "", false
	}
	end, before := re.Sub[len(re.Sub)-1], re.Sub[len(re.Sub)-2]
	if end.Op != syntax.OpEndText {
		return "", "", false
	}
	for before.Op == syntax.OpCapture && len(before.Sub) == 1 {
		before = before.Sub[0]
	}
	if before.Op != syntax.OpLiteral || len(before.Rune) == 0 {
		return "", "", false
	}
	fold := before.Flags&syntax.FoldCase != 0
	norm := func(s string) string {
		if fold {
			return strings.ToLower(s)
		}
		return s
	}
	l := norm(string(before.Rune))
	dollar := end.Flags&syntax.WasDollar != 0
	for _, d := range ds {
		ends := []string{norm(d)}
		if dollar && strings.HasSuffix(d, "\n") {
			ends = append(ends, norm(strings.TrimSuffix(d, "\n")))
		}
		for _, e := range ends {
			if strings.HasSuffix(l, e) || strings.HasSuffix(e, l) {
				return "", "", false
			}
		}
	}
	anchor = `\z`
	if dollar {
		anchor = "$"
	}
	return string(before.Rune), anchor, true
}

func anchorWhere(anchor string) string {
	if anchor == "$" {
		return `$ (the end of the input, or before a final "\n")`
	}
	return anchor + " (the end of the input)"
}

func quoteAll(ds []string) string {
	q := make([]string, len(ds))
	for i, d := range ds {
		q[i] = strconv.Quote(d)
	}
	return strings.Join(q, ", ")
}

// maxLiteralRune is the largest character an encoding's decoded inputs hold, or -1 for any.
func maxLiteralRune(e v1alpha1.Encoding) rune {
	switch e {
	case v1alpha1.EncodingASCII:
		return 0x7f
	case v1alpha1.EncodingBinary:
		return 0xff
	}
	return -1
}

// runeAbove finds a literal character above max that every match needs. It looks at
// literals on the regex's mandatory path only (concatenations, captures, repeats of at
// least one), so alternatives and classes never give a false warning.
func runeAbove(re *syntax.Regexp, max rune) (rune, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return 0, false
		}
		for _, r := range re.Rune {
			if r > max {
				return r, true
			}
		}
	case syntax.OpConcat, syntax.OpCapture:
		for _, sub := range re.Sub {
			if r, ok := runeAbove(sub, max); ok {
				return r, true
			}
		}
	case syntax.OpPlus:
		return runeAbove(re.Sub[0], max)
	case syntax.OpRepeat:
		if re.Min > 0 {
			return runeAbove(re.Sub[0], max)
		}
	}
	return 0, false
}

// minRunes is the fewest characters a match of re holds.
func minRunes(re *syntax.Regexp) int {
	switch re.Op {
	case syntax.OpLiteral:
		return len(re.Rune)
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return 1
	case syntax.OpCapture, syntax.OpPlus:
		return minRunes(re.Sub[0])
	case syntax.OpRepeat:
		return re.Min * minRunes(re.Sub[0])
	case syntax.OpConcat:
		n := 0
		for _, sub := range re.Sub {
			n += minRunes(sub)
		}
		return n
	case syntax.OpAlternate:
		n := -1
		for _, sub := range re.Sub {
			if m := minRunes(sub); n < 0 || m < n {
				n = m
			}
		}
		return max(n, 0)
	}
	return 0
}

// Annotate adds, after each rules[N] of a field path, the id of that rule, so that a message
// names the rule as the user knows it: spec.conversation.rules[17] (id 42).regex.
func Annotate(spec *v1alpha1.ConversationRulesSpec, path string) string {
	var b strings.Builder
	rest := path
	var groupRules []v1alpha1.Rule
	for {
		i := strings.Index(rest, "[")
		if i < 0 {
			b.WriteString(rest)
			return b.String()
		}
		j := strings.Index(rest[i:], "]")
		if j < 0 {
			b.WriteString(rest)
			return b.String()
		}
		j += i
		before := rest[:i]
		b.WriteString(rest[:j+1])
		idx, err := strconv.Atoi(rest[i+1 : j])
		rest = rest[j+1:]
		if err != nil {
			continue
		}
		switch {
		case strings.HasSuffix(before, "conversation.groups") && idx < len(spec.Conversation.Groups):
			groupRules = spec.Conversation.Groups[idx].Rules
			fmt.Fprintf(&b, " (id %s)", spec.Conversation.Groups[idx].ID)
		case strings.HasSuffix(before, "conversation.rules") && idx < len(spec.Conversation.Rules):
			fmt.Fprintf(&b, " (id %d)", spec.Conversation.Rules[idx].ID)
		case groupRules != nil && strings.HasSuffix(before, ".rules") && idx < len(groupRules):
			fmt.Fprintf(&b, " (id %d)", groupRules[idx].ID)
			groupRules = nil
		}
	}
}

// SortFieldErrors orders errors as the fields stand in a spec written in the order the API
// declares them (operation, memory, conversation; rules by index), so that a long list reads
// from the top of the file down. Errors on one field keep their order.
func SortFieldErrors(errs field.ErrorList) {
	keys := make(map[*field.Error][]int, len(errs))
	for _, e := range errs {
		keys[e] = pathKey(e.Field)
	}
	slices.SortStableFunc(errs, func(a, b *field.Error) int { return slices.Compare(keys[a], keys[b]) })
}

// pathKey turns spec.conversation.rules[3].regex into ranks: each field's position among
// its struct's JSON fields, each index as it is.
func pathKey(path string) []int {
	var key []int
	t := reflect.TypeFor[v1alpha1.ConversationRules]()
	for _, part := range strings.FieldsFunc(path, func(r rune) bool { return r == '.' }) {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			name = part[:i]
			if n, err := strconv.Atoi(strings.TrimSuffix(part[i+1:], "]")); err == nil {
				idx = n
			}
		}
		rank := 1 << 20 // unknown fields go last
		for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map) {
			t = t.Elem()
		}
		if t != nil && t.Kind() == reflect.Struct {
			if f, i, ok := jsonField(t, name); ok {
				rank, t = i, f.Type
			} else {
				t = nil
			}
		}
		key = append(key, rank)
		if idx >= 0 {
			key = append(key, idx)
		}
	}
	return key
}

// jsonField finds the field of struct t whose JSON name is name, and its position.
func jsonField(t reflect.Type, name string) (reflect.StructField, int, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == name || (tag == "" && f.Name == name) {
			return f, i, true
		}
	}
	return reflect.StructField{}, 0, false
}
