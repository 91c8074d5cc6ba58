package sfere

// MemoryOptions configures a [MemoryStore]. The zero value is usable.
type MemoryOptions struct {
	// OnEvict is called once for every stream that leaves the store.
	OnEvict EvictFunc
}

// MemoryStore is a [Store] kept in a map. Streams stay until they end, are
// replaced or are purged; nothing expires.
type MemoryStore struct {
	onEvict EvictFunc
	index
}

// NewMemoryStore returns an empty [MemoryStore].
func NewMemoryStore(opts MemoryOptions) *MemoryStore {
	return &MemoryStore{onEvict: opts.OnEvict}
}

// Put implements [Store].
func (m *MemoryStore) Put(s *Stream) {
	m.mu.Lock()
	old := m.put(s)
	m.mu.Unlock()
	if old != nil && old != s {
		Evict(m.onEvict, Eviction{Key: old.key, Stream: old, Cause: CauseReplaced})
	}
}

// Touch implements [Store]; a MemoryStore has no timers, so it does nothing.
func (m *MemoryStore) Touch(*Stream) {}

// Purge implements [Store].
func (m *MemoryStore) Purge(k Key) bool {
	m.mu.Lock()
	s := m.remove(k)
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
	ok := m.removeStream(s)
	m.mu.Unlock()
	if ok {
		Evict(m.onEvict, Eviction{Key: s.key, Stream: s, Cause: cause, Err: err})
	}
	return ok
}
