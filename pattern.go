package sfere

import (
	"fmt"
	"strings"
)

// Part is one place of a [Pattern]: either [Any] or an exact string made
// with [Exactly]. The wildcard is a distinct marker, so Exactly("*") matches
// only the literal string "*".
type Part struct {
	value string
	any   bool
}

// Any is the wildcard [Part]: it matches every string.
var Any = Part{any: true}

const wildcardText = "*"

// Exactly returns the [Part] that matches s and nothing else.
func Exactly(s string) Part { return Part{value: s} }

// IsAny reports whether p is the wildcard.
func (p Part) IsAny() bool { return p.any }

// Value returns the exact string p matches; it is "" for [Any].
func (p Part) Value() string { return p.value }

// Match reports whether p matches s.
func (p Part) Match(s string) bool { return p.any || p.value == s }

// Pattern selects keys. Each of its three places is [Any] or an exact
// string. A wildcard over the whole (category, id) pair of the original
// sfere is Category: Any, ID: Any. The zero Pattern matches only the key
// with three empty strings; use [All] to match everything.
type Pattern struct {
	Scope    Part
	Category Part
	ID       Part
}

// All matches every key.
var All = Pattern{Scope: Any, Category: Any, ID: Any}

// NewPattern returns the pattern (scope, category, id).
func NewPattern(scope, category, id Part) Pattern {
	return Pattern{Scope: scope, Category: category, ID: id}
}

// InCategory matches every key of category, in any scope and with any id:
// (*, category, *).
func InCategory(category string) Pattern {
	return Pattern{Scope: Any, Category: Exactly(category), ID: Any}
}

// InScope matches every key of scope: (scope, *, *).
func InScope(scope string) Pattern {
	return Pattern{Scope: Exactly(scope), Category: Any, ID: Any}
}

// Match reports whether p matches k.
func (p Pattern) Match(k Key) bool {
	return p.Category.Match(k.Category) && p.ID.Match(k.ID) && p.Scope.Match(k.Scope)
}

// exactKey returns the only key p matches, if p has no wildcard.
func (p Pattern) exactKey() (Key, bool) {
	if p.Scope.any || p.Category.any || p.ID.any {
		return Key{}, false
	}
	return Key{Scope: p.Scope.value, Category: p.Category.value, ID: p.ID.value}, true
}

// String returns the text form of p: like [Key.String], with "*" for [Any].
// A literal "*" is written %2A, so the form is unambiguous.
func (p Pattern) String() string {
	var b strings.Builder
	for i, part := range [3]Part{p.Scope, p.Category, p.ID} {
		if i > 0 {
			b.WriteByte('/')
		}
		if part.any {
			b.WriteString(wildcardText)
		} else {
			escapePart(&b, part.value)
		}
	}
	return b.String()
}

// MarshalText implements [encoding.TextMarshaler] with the form of [Pattern.String].
func (p Pattern) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParsePattern].
func (p *Pattern) UnmarshalText(text []byte) error {
	parsed, err := ParsePattern(string(text))
	if err != nil {
		return err
	}
	*p = parsed
	return nil
}

// ParsePattern parses the text form written by [Pattern.String].
func ParsePattern(text string) (Pattern, error) {
	scope, rest, ok := strings.Cut(text, "/")
	category, id, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || strings.Contains(id, "/") {
		return Pattern{}, fmt.Errorf("%w: %q: want scope/category/id", ErrBadText, text)
	}
	var out [3]Part
	for i, s := range [3]string{scope, category, id} {
		if s == wildcardText {
			out[i] = Any
			continue
		}
		v, err := unescapePart(s)
		if err != nil {
			return Pattern{}, fmt.Errorf("%w: %q: %v", ErrBadText, text, err)
		}
		out[i] = Exactly(v)
	}
	return Pattern{Scope: out[0], Category: out[1], ID: out[2]}, nil
}

// Matcher decides whether a key is selected. [Key], [Pattern] and [KeySet]
// are Matchers; a broadcast takes one as its exclusion.
type Matcher interface {
	Match(Key) bool
}

// KeySet is a set of exact keys; it is a [Matcher].
type KeySet map[Key]struct{}

// Keys returns a [KeySet] holding keys.
func Keys(keys ...Key) KeySet {
	s := make(KeySet, len(keys))
	for _, k := range keys {
		s[k] = struct{}{}
	}
	return s
}

// Match reports whether k is in s.
func (s KeySet) Match(k Key) bool {
	_, ok := s[k]
	return ok
}
