package sfere

import "sync"

// MemoryOptions configures a [MemoryStore]. The zero value is usable.
type MemoryOptions struct {
	// OnEvict is called once for every stream that leaves the store.
	OnEvict EvictFunc
}

// MemoryStore is a [Store] kept in a map. Streams stay until they end, are
// replaced or are purged; nothing expires.
type MemoryStore struct {
	onEvict EvictFunc

	mu  sync.RWMutex
	idx index
}

// NewMemoryStore returns an empty [MemoryStore].
func NewMemoryStore(opts MemoryOptions) *MemoryStore {
	return &MemoryStore{onEvict: opts.OnEvict, idx: newIndex()}
}

// Put implements [Store].
func (m *MemoryStore) Put(s *Stream) {
	m.mu.Lock()
	old := m.idx.put(s)
	m.mu.Unlock()
	if old != nil && old != s {
		Evict(m.onEvict, Eviction{Key: old.key, Stream: old, Cause: CauseReplaced})
	}
}

// Get implements [Store].
func (m *MemoryStore) Get(k Key) (*Stream, bool) {
	m.mu.RLock()
	s := m.idx.get(k)
	m.mu.RUnlock()
	return s, s != nil
}

// Touch implements [Store]; a MemoryStore has no timers, so it does nothing.
func (m *MemoryStore) Touch(*Stream) {}

// Purge implements [Store].
func (m *MemoryStore) Purge(k Key) bool {
	m.mu.Lock()
	s := m.idx.remove(k)
	m.mu.Unlock()
	if s == nil {
		return false
	}
	Evict(m.onEvict, Eviction{Key: k, Stream: s, Cause: CauseExplicit})
	return true
}

// PurgeStream implements [Store].
func (m *MemoryStore) PurgeStream(s *Stream, cause Cause, err error) bool {
	m.mu.Lock()
	ok := m.idx.removeStream(s)
	m.mu.Unlock()
	if ok {
		Evict(m.onEvict, Eviction{Key: s.key, Stream: s, Cause: cause, Err: err})
	}
	return ok
}

// Keys implements [Store].
func (m *MemoryStore) Keys(p Pattern) []Key {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.idx.keys(p)
}

// Count implements [Store].
func (m *MemoryStore) Count(p Pattern) int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.idx.count(p)
}

// AppendStreams implements [Store].
func (m *MemoryStore) AppendStreams(dst []*Stream, p Pattern) []*Stream {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.idx.appendStreams(dst, p)
}
