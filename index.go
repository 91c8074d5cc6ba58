package sfere

// index maps keys to streams, grouped by category so that a pattern with a
// fixed category visits only that category's keys. It is not safe for
// concurrent use: each store guards it with its own lock.
type index struct {
	byCategory map[string]map[Key]*Stream
	n          int
}

func newIndex() index {
	return index{byCategory: make(map[string]map[Key]*Stream)}
}

func (x *index) get(k Key) *Stream {
	return x.byCategory[k.Category][k]
}

// put stores s under its key and returns the stream it replaced, if any.
func (x *index) put(s *Stream) (old *Stream) {
	k := s.key
	m := x.byCategory[k.Category]
	if m == nil {
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
	m := x.byCategory[k.Category]
	s := m[k]
	if s == nil {
		return nil
	}
	x.drop(m, k)
	return s
}

// removeStream deletes s if it is the stream stored under its key.
func (x *index) removeStream(s *Stream) bool {
	m := x.byCategory[s.key.Category]
	if m[s.key] != s {
		return false
	}
	x.drop(m, s.key)
	return true
}

func (x *index) drop(m map[Key]*Stream, k Key) {
	delete(m, k)
	x.n--
	if len(m) == 0 {
		delete(x.byCategory, k.Category)
	}
}

// each calls fn for every stream whose key matches p.
func (x *index) each(p Pattern, fn func(*Stream)) {
	if k, ok := p.exactKey(); ok {
		if s := x.get(k); s != nil {
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

func (x *index) keys(p Pattern) []Key {
	out := make([]Key, 0, x.countHint(p))
	x.each(p, func(s *Stream) { out = append(out, s.key) })
	return out
}

func (x *index) count(p Pattern) int {
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

func (x *index) appendStreams(dst []*Stream, p Pattern) []*Stream {
	x.each(p, func(s *Stream) { dst = append(dst, s) })
	return dst
}

// countHint is an upper bound on the number of keys p can match.
func (x *index) countHint(p Pattern) int {
	if !p.Category.any {
		return len(x.byCategory[p.Category.value])
	}
	return x.n
}
