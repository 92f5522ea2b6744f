package connector

import (
	"net/netip"
	"sync"
)

// connKey identifies a logical connection: by the peer's address (IP, plus port with
// identifyByPort), or by the session id its inputs carry (operation.session).
type connKey struct {
	addr    netip.AddrPort
	session string
}

func addrKey(a netip.AddrPort) connKey { return connKey{addr: a} }
func sessionKey(id string) connKey     { return connKey{session: id} }

// registry holds the live logical connections by key.
type registry struct {
	mu       sync.Mutex
	m        map[connKey]*conversation
	stopping bool
}

func (r *registry) init() { r.m = map[connKey]*conversation{} }

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
func (r *registry) join(key connKey, max int, newConv func() *conversation) (*conversation, joinResult) {
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

// rekey files cv under key instead of its current key; false when key is taken.
func (r *registry) rekey(cv *conversation, key connKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if other := r.m[key]; other != nil && other != cv {
		return false
	}
	if r.m[cv.key] == cv {
		delete(r.m, cv.key)
	}
	cv.key = key
	r.m[key] = cv
	return true
}

// lookup returns the live conversation of key, if any.
func (r *registry) lookup(key connKey) *conversation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[key]
}
