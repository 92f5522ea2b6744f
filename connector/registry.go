package connector

import (
	"net/netip"
	"sync"
)

// registry holds the live logical connections by key.
type registry struct {
	mu       sync.Mutex
	m        map[netip.AddrPort]*conversation
	stopping bool
}

func (r *registry) init() { r.m = map[netip.AddrPort]*conversation{} }

func (r *registry) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}

// joinResult says what join did.
type joinResult uint8

const (
	joined joinResult = iota
	created
	overCap
	stopping
)

// join returns the live conversation of key, or creates one with newConv when fewer than
// max are live. A created conversation is returned locked, so that it is started before
// anyone else can use it.
func (r *registry) join(key netip.AddrPort, max int, newConv func() *conversation) (*conversation, joinResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return nil, stopping
	}
	if cv := r.m[key]; cv != nil {
		return cv, joined
	}
	if len(r.m) >= max {
		return nil, overCap
	}
	cv := newConv()
	cv.key = key
	cv.mu.Lock()
	r.m[key] = cv
	return cv, created
}

// remove forgets cv if it is still the conversation of its key.
func (r *registry) remove(cv *conversation) {
	r.mu.Lock()
	if r.m[cv.key] == cv {
		delete(r.m, cv.key)
	}
	r.mu.Unlock()
}

// drain refuses new conversations from now on and returns the live ones.
func (r *registry) drain() []*conversation {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopping = true
	out := make([]*conversation, 0, len(r.m))
	for _, cv := range r.m {
		out = append(out, cv)
	}
	return out
}

// lookup returns the live conversation of key, if any.
func (r *registry) lookup(key netip.AddrPort) *conversation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[key]
}
