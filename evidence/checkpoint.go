package evidence

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// Checkpoint is a signed statement that activity Seq of Chain has hash Hash: every
// activity of the chain up to it is covered, through the prevHash links.
type Checkpoint struct {
	Chain string `json:"chain"`
	Seq   uint64 `json:"seq"`
	Hash  string `json:"hash"`
	// Time is when it was signed (RFC 3339, UTC).
	Time string `json:"time"`
	// Key identifies the signing key: KeyID of its public key.
	Key string `json:"key"`
	// Signature is the base64 Ed25519 signature of SignedBytes.
	Signature string `json:"signature"`
}

// CheckpointLine is how a checkpoint travels among activities: one JSON object with the
// single key "checkpoint", which no activity has.
type CheckpointLine struct {
	Checkpoint *Checkpoint `json:"checkpoint"`
}

// SignedBytes is what the signature covers: a versioned, line-separated text that no two
// different checkpoints share.
func (c *Checkpoint) SignedBytes() []byte {
	return []byte("parley-checkpoint-v1\n" + c.Chain + "\n" + strconv.FormatUint(c.Seq, 10) + "\n" + c.Hash + "\n" + c.Time + "\n")
}

// KeyID is the first 8 bytes of the SHA-256 of the public key, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Sign returns the checkpoint of chain at seq with hash, signed now with key.
func Sign(key ed25519.PrivateKey, chain string, seq uint64, hash string, now time.Time) *Checkpoint {
	c := &Checkpoint{Chain: chain, Seq: seq, Hash: hash, Time: now.UTC().Format(time.RFC3339Nano),
		Key: KeyID(key.Public().(ed25519.PublicKey))}
	c.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, c.SignedBytes()))
	return c
}

// Valid says whether pub signed c.
func (c *Checkpoint) Valid(pub ed25519.PublicKey) bool {
	sig, err := base64.StdEncoding.DecodeString(c.Signature)
	return err == nil && ed25519.Verify(pub, c.SignedBytes(), sig)
}

// Default checkpoint policy: a checkpoint at least every DefaultEvery activities of a
// chain, or DefaultInterval after its first unsigned activity.
const (
	DefaultEvery    = 1000
	DefaultInterval = 10 * time.Second
)

// forgetAfterIntervals is how many intervals a chain with nothing left unsigned stays known
// after its last activity. A chain is one connector process's: it ends with the process, and
// an engine that lives through thousands of pod restarts must not keep them all (nor visit
// them at every Due). Long enough that a process still running but quiet is simply seen
// again: its next activity starts a new head, which signs from there.
const forgetAfterIntervals = 6

// Signer follows the chains of the activities written through it and decides when each
// needs a checkpoint. It is safe for concurrent use.
type Signer struct {
	key      ed25519.PrivateKey
	every    uint64
	interval time.Duration
	now      func() time.Time

	mu     sync.Mutex
	chains map[string]*chainHead
}

// chainHead is the newest activity seen of one chain and how much of it is unsigned.
type chainHead struct {
	seq      uint64
	hash     string
	unsigned uint64
	since    time.Time // when the oldest unsigned activity was seen
	seen     time.Time // when the newest activity was seen
}

// NewSigner signs with key, every activities or interval (DefaultEvery, DefaultInterval
// when zero).
func NewSigner(key ed25519.PrivateKey, every int, interval time.Duration) *Signer {
	if every <= 0 {
		every = DefaultEvery
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Signer{key: key, every: uint64(every), interval: interval, now: time.Now, chains: map[string]*chainHead{}}
}

// Interval is how long an activity may stay unsigned.
func (s *Signer) Interval() time.Duration { return s.interval }

// Observe notes the written activities and returns the checkpoints now due: for each chain
// with `every` unsigned activities or one unsigned for the interval.
func (s *Signer) Observe(batch []*v1alpha1.ActivityRecord) []*Checkpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var due []*Checkpoint
	for _, a := range batch {
		ev := a.Evidence
		if ev == nil || ev.Hash == "" {
			continue
		}
		h := s.chains[ev.Chain]
		if h == nil {
			h = &chainHead{}
			s.chains[ev.Chain] = h
		}
		if ev.Seq <= h.seq {
			continue // a replay: already seen
		}
		if h.unsigned == 0 {
			h.since = now
		}
		h.seq, h.hash, h.seen = ev.Seq, ev.Hash, now
		h.unsigned++
		if h.unsigned >= s.every {
			due = append(due, s.sign(ev.Chain, h, now))
		}
	}
	return append(due, s.dueLocked(now, false)...)
}

// Due returns the checkpoints of the chains whose oldest unsigned activity waited the
// interval, or of every chain with unsigned activities when all is set (at the end).
func (s *Signer) Due(all bool) []*Checkpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dueLocked(s.now(), all)
}

func (s *Signer) dueLocked(now time.Time, all bool) []*Checkpoint {
	var due []*Checkpoint
	for id, h := range s.chains {
		if h.unsigned > 0 && (all || now.Sub(h.since) >= s.interval) {
			due = append(due, s.sign(id, h, now))
		}
	}
	return due
}

// Prune forgets the chains with nothing unsigned whose last activity is
// forgetAfterIntervals intervals old, telling forget of each while it holds the signer's
// lock: a caller that notes a chain after Observe never loses a note Prune did not mean.
func (s *Signer) Prune(forget func(chain string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for id, h := range s.chains {
		if h.unsigned == 0 && now.Sub(h.seen) >= forgetAfterIntervals*s.interval {
			delete(s.chains, id)
			forget(id)
		}
	}
}

func (s *Signer) sign(chain string, h *chainHead, now time.Time) *Checkpoint {
	h.unsigned = 0
	return Sign(s.key, chain, h.seq, h.hash, now)
}

// ReadPrivateKey reads an Ed25519 private key: PEM PKCS #8 ("PRIVATE KEY", as `openssl
// genpkey -algorithm ed25519` writes it).
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParsePrivateKey reads what MarshalPrivateKey writes: an Ed25519 key as PEM PKCS #8.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	key, err := decodePEM(data, "PRIVATE KEY", x509.ParsePKCS8PrivateKey)
	if err != nil {
		return nil, err
	}
	k, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an Ed25519 key", key)
	}
	return k, nil
}

// ReadPublicKey reads an Ed25519 public key: PEM PKIX ("PUBLIC KEY", as `openssl pkey
// -pubout` writes it); a private key file gives its public key.
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	key, err := parsePEM(path, "PUBLIC KEY", x509.ParsePKIXPublicKey)
	if err != nil {
		if priv, perr := ReadPrivateKey(path); perr == nil {
			return priv.Public().(ed25519.PublicKey), nil
		}
		return nil, err
	}
	k, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T, not an Ed25519 key", path, key)
	}
	return k, nil
}

func parsePEM(path, typ string, parse func([]byte) (any, error)) (any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := decodePEM(data, typ, parse)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// decodePEM parses the PEM block of type typ in data with parse.
func decodePEM(data []byte, typ string, parse func([]byte) (any, error)) (any, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if block.Type != typ {
		return nil, fmt.Errorf("a PEM %q, want %q", block.Type, typ)
	}
	return parse(block.Bytes)
}

// MarshalPrivateKey is key as PEM PKCS #8, and MarshalPublicKey its public key as PEM PKIX:
// what ReadPrivateKey and ReadPublicKey read.
func MarshalPrivateKey(key ed25519.PrivateKey) []byte {
	der, _ := x509.MarshalPKCS8PrivateKey(key) // never fails for an Ed25519 key
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// MarshalPublicKey is pub as PEM PKIX.
func MarshalPublicKey(pub ed25519.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub) // never fails for an Ed25519 key
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Batch is what a sink writes: activities, in order.
type Batch = []*v1alpha1.ActivityRecord

// BatchWriter is the activity.Sink interface, repeated so that this package needs nothing
// of the connector's.
type BatchWriter interface {
	Write(batch Batch) error
}

// SigningSink passes batches to a sink and writes the checkpoints they make due to w, one
// JSON line each ({"checkpoint": {...}}), after the batch: w is where the sink writes, so
// checkpoints travel with their activities.
type SigningSink struct {
	next BatchWriter
	// emit writes checkpoints where next writes the activities.
	emit   func([]*Checkpoint) error
	signer *Signer
	mu     sync.Mutex
	stop   chan struct{}
	done   chan struct{}
}

// NewSigningSink writes next's batches, and checkpoints to w.
func NewSigningSink(next BatchWriter, w io.Writer, signer *Signer) *SigningSink {
	return NewSigningSinkFunc(next, CheckpointLines(w), signer)
}

// NewSigningSinkFunc writes next's batches, and hands the checkpoints to emit, which
// writes them where next writes (as `parley run` to its ActivitySinks).
func NewSigningSinkFunc(next BatchWriter, emit func([]*Checkpoint) error, signer *Signer) *SigningSink {
	return &SigningSink{next: next, emit: emit, signer: signer, stop: make(chan struct{}), done: make(chan struct{})}
}

// Write implements the sink.
func (s *SigningSink) Write(batch Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.next.Write(batch); err != nil {
		return err
	}
	return s.write(s.signer.Observe(batch))
}

func (s *SigningSink) write(cps []*Checkpoint) error {
	if len(cps) == 0 {
		return nil
	}
	return s.emit(cps)
}

// CheckpointLines writes checkpoints to w, a JSON line each: {"checkpoint": {...}}.
func CheckpointLines(w io.Writer) func([]*Checkpoint) error {
	return func(cps []*Checkpoint) error { return writeLines(w, cps) }
}

func writeLines(w io.Writer, cps []*Checkpoint) error {
	var errs []error
	for _, c := range cps {
		line, _ := json.Marshal(CheckpointLine{Checkpoint: c})
		if _, err := w.Write(append(line, '\n')); err != nil {
			errs = append(errs, fmt.Errorf("write checkpoint: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Run writes the checkpoints the interval makes due while no activity comes, until Close.
// Call it once, on its own goroutine.
func (s *SigningSink) Run(onError func(error)) {
	defer close(s.done)
	t := time.NewTicker(s.signer.Interval() / 4)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.mu.Lock()
			err := s.write(s.signer.Due(false))
			s.mu.Unlock()
			if err != nil && onError != nil {
				onError(err)
			}
		case <-s.stop:
			return
		}
	}
}

// Close stops Run (if it runs: pass running) and signs what is still unsigned.
func (s *SigningSink) Close(running bool) error {
	close(s.stop)
	if running {
		<-s.done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.write(s.signer.Due(true))
}
