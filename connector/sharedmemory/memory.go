package sharedmemory

import (
	"context"
	"sync"
)

// Memory is the in-process store: one map under one lock, shared by every connector of a
// process that is handed it (`parley run` hands one to all of its documents).
type Memory struct {
	mu     sync.Mutex
	values map[string]string
	subs   map[string]map[*subscription]struct{}
}

// NewMemory returns an empty in-process store.
func NewMemory() *Memory {
	return &Memory{values: map[string]string{}, subs: map[string]map[*subscription]struct{}{}}
}

type memoryTxn struct {
	m      *Memory
	space  string
	writes map[string]string
	order  []string
}

func (t *memoryTxn) Get(name string) (Value, error) {
	if v, ok := t.writes[name]; ok {
		return Value{Text: v, Set: true}, nil
	}
	v, ok := t.m.values[Key("", t.space, name)]
	return Value{Text: v, Set: ok}, nil
}

func (t *memoryTxn) Set(name, text string) {
	if _, ok := t.writes[name]; !ok {
		t.order = append(t.order, name)
	}
	t.writes[name] = text
}

// Update runs fn under the store's lock: no other step sees or changes the space meanwhile.
func (m *Memory) Update(ctx context.Context, space string, _ []string, fn func(Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t := &memoryTxn{m: m, space: space, writes: map[string]string{}}
	if err := fn(t); err != nil {
		return err
	}
	for _, name := range t.order {
		m.values[Key("", space, name)] = t.writes[name]
	}
	if len(t.order) > 0 {
		m.notify(space)
	}
	return nil
}

// View reads names of space.
func (m *Memory) View(ctx context.Context, space string, names []string) ([]Value, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Value, len(names))
	for i, n := range names {
		out[i].Text, out[i].Set = m.values[Key("", space, n)]
	}
	return out, nil
}

// Init writes entries (where none is set, unless overwrite).
func (m *Memory) Init(ctx context.Context, space string, entries []Entry, overwrite bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := false
	for _, e := range entries {
		k := Key("", space, e.Name)
		if _, set := m.values[k]; set && !overwrite {
			continue
		}
		m.values[k] = e.Text
		changed = true
	}
	if changed {
		m.notify(space)
	}
	return nil
}

// notify wakes space's subscribers. Called with mu held.
func (m *Memory) notify(space string) {
	for s := range m.subs[space] {
		signal(s.c)
	}
}

// Subscribe notifies every change of space's variables.
func (m *Memory) Subscribe(space string) Subscription {
	s := &subscription{c: make(chan struct{}, 1)}
	s.close = func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		delete(m.subs[space], s)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.subs[space] == nil {
		m.subs[space] = map[*subscription]struct{}{}
	}
	m.subs[space][s] = struct{}{}
	return s
}

// Close does nothing: the values live as long as the process.
func (m *Memory) Close() error { return nil }
