// Package evidence makes activities evidence: every activity carries its place in a hash
// chain (evidence: {chain, seq, prevHash, hash}), checkpoints of each chain are signed with
// Ed25519, and Verify checks a log of activities and checkpoints against the public key,
// naming every gap, reordering and altered record. docs/evidence.md describes the format.
//
// It knows only the API types, so that the connector (where activities are born and
// chained), the engine and the sinks (where checkpoints are written) and `parley verify`
// share one definition.
package evidence

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"unicode/utf8"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// HashPrefix starts every hash of a chain: the algorithm, as rulesRef.hash names it.
const HashPrefix = "sha256:"

// Encoder appends an activity's JSON line exactly as encoding/json writes it with HTML
// escaping off, and a newline. The connector passes its hand-written encoder (the same
// bytes, faster); CanonicalJSON is the reference.
type Encoder func(dst []byte, a *v1alpha1.ActivityRecord) []byte

// CanonicalJSON appends a's JSON line with encoding/json, HTML escaping off.
func CanonicalJSON(dst []byte, a *v1alpha1.ActivityRecord) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(a) // an ActivityRecord has nothing that fails to encode
	return append(dst, b.Bytes()...)
}

// Chain numbers and links the activities of one connector process (or one `parley run`).
// Number reserves sequence numbers where activities are recorded, under the caller's lock
// so that numbers follow the recording order; Seal computes the hashes on the one
// goroutine that writes them, in that order. An activity numbered but never sealed (the
// register was full) leaves a gap that the next one bridges: its prevHash names the last
// sealed activity.
type Chain struct {
	id   string
	seq  uint64
	prev string
	buf  []byte
	enc  Encoder
	// scratch holds the canonical encoding being hashed, kept from one Seal to the next.
	scratch []byte
}

// NewChain starts a chain with a random id, hashing with enc (CanonicalJSON when nil).
func NewChain(enc Encoder) *Chain {
	var id [8]byte
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails
	if enc == nil {
		enc = CanonicalJSON
	}
	return &Chain{id: hex.EncodeToString(id[:]), enc: enc}
}

// ID is the chain's id.
func (c *Chain) ID() string { return c.id }

// Number gives a its chain and the next sequence number. The caller serialises calls.
func (c *Chain) Number(a *v1alpha1.ActivityRecord) {
	c.seq++
	a.Evidence = &v1alpha1.EvidenceRecord{Chain: c.id, Seq: c.seq}
}

// Seal links a, numbered by Number, to the last sealed activity and sets its hash. Calls
// come from one goroutine, in sequence order. Strings that are not valid UTF-8 are first
// made so, each invalid byte becoming U+FFFD, as any JSON reader of the activity sees them:
// the hash must be the same for the record here and for the record read back.
func (c *Chain) Seal(a *v1alpha1.ActivityRecord) {
	if a.Evidence == nil {
		c.Number(a)
	}
	a.Evidence.PrevHash = c.prev
	c.buf, c.scratch = hash(c.buf[:0], c.scratch[:0], a, c.enc)
	a.Evidence.Hash = string(c.buf)
	c.prev = a.Evidence.Hash
}

// Hash appends the hash a must carry: HashPrefix and the hex SHA-256 of its canonical
// encoding, the JSON line enc writes for a with evidence.hash empty and input.preview (the
// engine's one-line summary, written after the activity was sealed) left out, and its
// strings made valid UTF-8 (each invalid byte U+FFFD, as a reader of the JSON sees them;
// JSON writes such a byte as the escape \ufffd, which reads back as the character itself).
// a is left as it was.
func Hash(dst []byte, a *v1alpha1.ActivityRecord, enc Encoder) []byte {
	dst, _ = hash(dst, nil, a, enc)
	return dst
}

// hash is Hash encoding into scratch, which it returns grown for the next call: an
// encoder behind a function value makes a buffer on the stack escape, one per activity.
func hash(dst, scratch []byte, a *v1alpha1.ActivityRecord, enc Encoder) ([]byte, []byte) {
	if !validStrings(a) {
		a = a.DeepCopy()
		Sanitize(a)
	}
	var hash, preview string
	if a.Evidence != nil {
		hash = a.Evidence.Hash
		a.Evidence.Hash = ""
	}
	if a.Input != nil {
		preview = a.Input.Preview
		a.Input.Preview = ""
	}
	scratch = enc(scratch, a)
	sum := sha256.Sum256(scratch)
	if a.Evidence != nil {
		a.Evidence.Hash = hash
	}
	if a.Input != nil {
		a.Input.Preview = preview
	}
	dst = append(dst, HashPrefix...)
	return hex.AppendEncode(dst, sum[:]), scratch
}

// validStrings says whether every string Sanitize would fix is valid UTF-8 already.
func validStrings(a *v1alpha1.ActivityRecord) bool {
	ok := utf8.ValidString(a.Message)
	if a.Input != nil {
		ok = ok && utf8.ValidString(a.Input.Text)
	}
	if a.Output != nil {
		ok = ok && utf8.ValidString(a.Output.Text)
	}
	for _, c := range a.Captures {
		ok = ok && utf8.ValidString(c.Value)
	}
	if m := a.Memory; m != nil {
		for _, scope := range []map[string]string{m.Connection, m.Global} {
			for _, v := range scope {
				ok = ok && utf8.ValidString(v)
			}
		}
	}
	return ok
}

// Sanitize replaces every byte of a's strings that is not part of valid UTF-8 with U+FFFD,
// as encoding/json does when it writes them.
func Sanitize(a *v1alpha1.ActivityRecord) {
	fix := func(s *string) {
		if !utf8.ValidString(*s) {
			*s = validUTF8(*s)
		}
	}
	fix(&a.Message)
	if a.Input != nil {
		fix(&a.Input.Text)
	}
	if a.Output != nil {
		fix(&a.Output.Text)
	}
	for i := range a.Captures {
		fix(&a.Captures[i].Value)
	}
	if m := a.Memory; m != nil {
		for _, scope := range []map[string]string{m.Connection, m.Global} {
			for k, v := range scope {
				if !utf8.ValidString(v) {
					scope[k] = validUTF8(v)
				}
			}
		}
	}
}

func validUTF8(s string) string {
	var b []byte
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return string(b)
}
