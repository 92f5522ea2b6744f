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

// Encoder appends an activity's canonical encoding, the bytes its hash is taken of: its
// JSON line exactly as encoding/json writes it with HTML escaping off, and a newline, for
// the record as a JSON reader reads it back, where each byte of a string that is not valid
// UTF-8 is the character U+FFFD (encoding/json writes such a byte as the escape \ufffd, which
// reads back as the character, and a character is written as itself). The connector passes
// its hand-written encoder (the same bytes, faster, in one pass); CanonicalJSON is the
// reference.
type Encoder func(dst []byte, a *v1alpha1.ActivityRecord) []byte

// CanonicalJSON appends a's canonical encoding with encoding/json: its line, with each
// \ufffd escape (an invalid byte: encoding/json writes a U+FFFD character as itself)
// written as the character.
func CanonicalJSON(dst []byte, a *v1alpha1.ActivityRecord) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(a) // an ActivityRecord has nothing that fails to encode
	line := b.Bytes()
	for {
		i := bytes.IndexByte(line, '\\')
		if i < 0 {
			return append(dst, line...)
		}
		dst = append(dst, line[:i]...)
		if bytes.HasPrefix(line[i:], []byte(`\ufffd`)) {
			dst = append(dst, string(utf8.RuneError)...)
			line = line[i+len(`\ufffd`):]
			continue
		}
		// Any other escape (backslashes occur only in strings, each starting one): the
		// backslash and the byte it escapes, so that the backslash of \\ufffd, an escaped
		// backslash, does not read as starting \ufffd.
		dst = append(dst, line[i:i+2]...)
		line = line[i+2:]
	}
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

// Number gives a its chain and the next sequence number, in a.Evidence when the caller made
// room for it with the activity (one allocation for both, on the path of every input), else
// in a new one. The caller serialises calls.
func (c *Chain) Number(a *v1alpha1.ActivityRecord) {
	c.seq++
	if a.Evidence == nil {
		a.Evidence = &v1alpha1.EvidenceRecord{}
	}
	*a.Evidence = v1alpha1.EvidenceRecord{Chain: c.id, Seq: c.seq}
}

// Seal links a, numbered by Number, to the last sealed activity and sets its hash. Calls
// come from one goroutine, in sequence order. The hash is of the record as a JSON reader
// reads it back (each byte of a string that is not valid UTF-8 is U+FFFD then: Encoder),
// so that it is the same for the record here and for the record read back; a's strings
// are left as they are.
func (c *Chain) Seal(a *v1alpha1.ActivityRecord) {
	if a.Evidence == nil || a.Evidence.Seq == 0 {
		c.Number(a)
	}
	a.Evidence.PrevHash = c.prev
	c.buf, c.scratch = hash(c.buf[:0], c.scratch[:0], a, c.enc)
	a.Evidence.Hash = string(c.buf)
	c.prev = a.Evidence.Hash
}

// Hash appends the hash a must carry: HashPrefix and the hex SHA-256 of its canonical
// encoding (Encoder), written by enc for a with evidence.hash empty and input.preview (the
// engine's one-line summary, written after the activity was sealed) left out. a is left as
// it was.
func Hash(dst []byte, a *v1alpha1.ActivityRecord, enc Encoder) []byte {
	dst, _ = hash(dst, nil, a, enc)
	return dst
}

// hash is Hash encoding into scratch, which it returns grown for the next call: an
// encoder behind a function value makes a buffer on the stack escape, one per activity.
func hash(dst, scratch []byte, a *v1alpha1.ActivityRecord, enc Encoder) ([]byte, []byte) {
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
