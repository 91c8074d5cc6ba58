package sfere

import "sync"

// index maps keys to streams, grouped by category so that a pattern with a
// fixed category visits only that category's keys. Both stores embed it:
// they take its lock around its unexported methods, and its exported
// methods, which lock it themselves, are theirs.
type index struct {
	mu         sync.RWMutex
	byCategory map[string]map[Key]*Stream
	n          int
}

// Get implements [Store].
func (x *index) Get(k Key) (*Stream, bool) {
	x.mu.RLock()
	s := x.byCategory[k.Category][k]
	x.mu.RUnlock()
	return s, s != nil
}

// put stores s under its key and returns the stream it replaced, if any.
func (x *index) put(s *Stream) (old *Stream) {
	k := s.key
	m := x.byCategory[k.Category]
	if m == nil {
		if x.byCategory == nil {
			x.byCategory = make(map[string]map[Key]*Stream)
		}
		m = make(map[Key]*Stream)
		x.byCategory[k.Category] = m
	}
	old = m[k]
	if old == nil {
		x.n++
	}
	m[k] = s
	return old
}

// remove deletes the stream stored under k and returns it.
func (x *index) remove(k Key) *Stream {
	s := x.byCategory[k.Category][k]
	if s != nil {
		x.removeStream(s)
	}
	return s
}

// removeStream deletes s if it is the stream stored under its key.
func (x *index) removeStream(s *Stream) bool {
	m := x.byCategory[s.key.Category]
	if m[s.key] != s {
		return false
	}
	delete(m, s.key)
	x.n--
	if len(m) == 0 {
		delete(x.byCategory, s.key.Category)
	}
	return true
}

// each calls fn for every stream whose key matches p.
func (x *index) each(p Pattern, fn func(*Stream)) {
	if k, ok := p.exactKey(); ok {
		if s := x.byCategory[k.Category][k]; s != nil {
			fn(s)
		}
		return
	}
	if !p.Category.any {
		for k, s := range x.byCategory[p.Category.value] {
			if p.Match(k) {
				fn(s)
			}
		}
		return
	}
	for _, m := range x.byCategory {
		for k, s := range m {
			if p.Match(k) {
				fn(s)
			}
		}
	}
}

// Keys implements [Store].
func (x *index) Keys(p Pattern) []Key {
	x.mu.RLock()
	defer x.mu.RUnlock()
	hint := x.n // an upper bound on the number of keys p can match
	if !p.Category.any {
		hint = len(x.byCategory[p.Category.value])
	}
	out := make([]Key, 0, hint)
	x.each(p, func(s *Stream) { out = append(out, s.key) })
	return out
}

// Count implements [Store].
func (x *index) Count(p Pattern) int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if p.Scope.any && p.ID.any {
		if p.Category.any {
			return x.n
		}
		return len(x.byCategory[p.Category.value])
	}
	n := 0
	x.each(p, func(*Stream) { n++ })
	return n
}

// AppendStreams implements [Store].
func (x *index) AppendStreams(dst []*Stream, p Pattern) []*Stream {
	x.mu.RLock()
	defer x.mu.RUnlock()
	x.each(p, func(s *Stream) { dst = append(dst, s) })
	return dst
}
