package connector

import (
	"net/netip"
	"slices"
	"sync"
)

// connKey identifies a logical connection: by the peer's address (IP, plus port with
// identifyBy: Address), or by the session id its inputs carry (operation.session).
type connKey struct {
	addr    netip.AddrPort
	session string
}

func addrKey(a netip.AddrPort) connKey { return connKey{addr: a} }
func sessionKey(id string) connKey     { return connKey{session: id} }

// registry holds the live logical connections by key. A conversation is filed under its key
// and, in session mode, may also be found by the address that started it (its alias).
type registry struct {
	mu sync.Mutex
	// byAddr and bySession file conversations by the two kinds of key: every live
	// connection has an entry, and a map keyed by the address alone takes 40 bytes a slot
	// where one keyed by connKey took 56 (docs/performance.md §1).
	byAddr    map[netip.AddrPort]*conversation
	bySession map[string]*conversation
	count     int // conversations, not keys
	stopping  bool
	// perSource counts the conversations of each source, when a program caps them
	// (maxConnectionsPerPeer); a conversation counted keeps its source in cv.filing.
	perSource map[netip.Prefix]int
}

func (r *registry) init() {
	r.byAddr = map[netip.AddrPort]*conversation{}
	r.bySession = map[string]*conversation{}
	r.perSource = map[netip.Prefix]int{}
}

// get returns the conversation filed under k, if any. Called with mu held.
func (r *registry) get(k connKey) *conversation {
	if k.session != "" {
		return r.bySession[k.session]
	}
	return r.byAddr[k.addr]
}

// put files cv under k. Called with mu held.
func (r *registry) put(k connKey, cv *conversation) {
	if k.session != "" {
		r.bySession[k.session] = cv
	} else {
		r.byAddr[k.addr] = cv
	}
}

// del forgets what is filed under k. Called with mu held.
func (r *registry) del(k connKey) {
	if k.session != "" {
		delete(r.bySession, k.session)
	} else {
		delete(r.byAddr, k.addr)
	}
}

func (r *registry) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// joinResult says what join did.
type joinResult uint8

const (
	joined joinResult = iota
	created
	overCap
	overSourceCap
	stopping
)

// join returns the live conversation of key, or creates one with newConv when fewer than
// max are live and, if perSource is set, fewer than perSource of source. A created
// conversation is returned locked, so that it is started before anyone else can use it.
//
// With evict (capacityPolicy EvictIdlest), a key over max that is within perSource gets
// overCap with the idlest conversation of a sample but those in tried, for the caller to
// end and try again: ending a conversation takes its lock, then this one's (finishOn calls
// remove), so it cannot be ended here. Without evict, max is checked before perSource.
func (r *registry) join(key connKey, max int, source netip.Prefix, perSource int, evict bool, tried []*conversation, newConv func() *conversation) (*conversation, joinResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return nil, stopping
	}
	if cv := r.get(key); cv != nil {
		return cv, joined
	}
	full := r.count >= max
	if full && !evict {
		return nil, overCap
	}
	if perSource > 0 && r.perSource[source] >= perSource {
		return nil, overSourceCap
	}
	if full {
		return r.idlest(tried), overCap
	}
	cv := newConv()
	cv.key = key
	if perSource > 0 {
		cv.filed().source = source
		r.perSource[source]++
	}
	cv.mu.Lock()
	r.put(key, cv)
	r.count++
	return cv, created
}

// evictionSamples is how many conversations idlest compares, from each map: like Redis's
// approximated LRU, a sample taken when an eviction is needed, rather than a list kept in
// order of activity, which would cost every datagram some work under a lock.
const evictionSamples = 16

// idlest returns the conversation whose last input is the oldest among up to
// evictionSamples of each map (Go starts each iteration of a map at a random place), but
// none of skip (victims tried already: busy, or ended meanwhile); nil when there is none.
// Called with mu held; lastInput is atomic, so no conversation's lock is taken.
func (r *registry) idlest(skip []*conversation) *conversation {
	var victim *conversation
	var oldest int64
	consider := func(cv *conversation) {
		if slices.Contains(skip, cv) {
			return
		}
		if t := cv.lastInput.Load(); victim == nil || t < oldest {
			victim, oldest = cv, t
		}
	}
	n := 0
	for _, cv := range r.byAddr {
		consider(cv)
		if n++; n == evictionSamples {
			break
		}
	}
	n = 0
	for _, cv := range r.bySession {
		consider(cv)
		if n++; n == evictionSamples {
			break
		}
	}
	return victim
}

// setAlias also files cv under key, unless another conversation has it.
func (r *registry) setAlias(cv *conversation, key connKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.get(key) == nil && r.get(cv.key) == cv {
		r.put(key, cv)
		cv.filed().alias = key
	}
}

// remove forgets cv, under its key and its alias.
func (r *registry) remove(cv *conversation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.get(cv.key) != cv {
		return
	}
	r.del(cv.key)
	if alias := cv.alias(); alias != (connKey{}) && r.get(alias) == cv {
		r.del(alias)
	}
	if cv.filing != nil && cv.filing.source.IsValid() {
		source := cv.filing.source
		if n := r.perSource[source] - 1; n > 0 {
			r.perSource[source] = n
		} else {
			delete(r.perSource, source)
		}
	}
	r.count--
}

// drain refuses new conversations from now on and returns the live ones.
func (r *registry) drain() []*conversation {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopping = true
	out := make([]*conversation, 0, r.count)
	for addr, cv := range r.byAddr {
		if addrKey(addr) == cv.key { // aliases name the same conversations again
			out = append(out, cv)
		}
	}
	for id, cv := range r.bySession {
		if sessionKey(id) == cv.key {
			out = append(out, cv)
		}
	}
	return out
}

// rekey files cv under key instead of its current key; false when key is taken. With
// keepAddress, a conversation filed under an address and without an alias keeps that
// address as its alias.
func (r *registry) rekey(cv *conversation, key connKey, keepAddress bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if other := r.get(key); other != nil && other != cv {
		return false
	}
	if r.get(cv.key) == cv && cv.key != cv.alias() {
		if keepAddress && cv.key.session == "" && cv.alias() == (connKey{}) {
			cv.filed().alias = cv.key
		} else {
			r.del(cv.key)
		}
	}
	cv.key = key
	r.put(key, cv)
	return true
}

// filed returns cv's filing, made on first use. Called with the registry's lock held.
func (cv *conversation) filed() *filing {
	if cv.filing == nil {
		cv.filing = &filing{}
	}
	return cv.filing
}

// alias is cv's second key, or none. Called with the registry's lock held.
func (cv *conversation) alias() connKey {
	if cv.filing == nil {
		return connKey{}
	}
	return cv.filing.alias
}

// lookup returns the live conversation of key, if any.
func (r *registry) lookup(key connKey) *conversation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.get(key)
}
