package sfere

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Key addresses one stream: a scope (a tenant, a session, or [DefaultScope]),
// a category (what the stream is for, e.g. "lobby") and an id within it
// (e.g. a user name). Any strings are valid, including empty ones and "*":
// wildcards live only in [Pattern], never in a Key.
type Key struct {
	Scope    string
	Category string
	ID       string
}

// DefaultScope is the scope used when an application has only one.
const DefaultScope = "default"

// NewKey returns the key (scope, category, id).
func NewKey(scope, category, id string) Key {
	return Key{Scope: scope, Category: category, ID: id}
}

// ErrBadText is returned (wrapped) by [ParseKey] and [ParsePattern] for text
// that is not a key or pattern written by [Key.String] or [Pattern.String].
var ErrBadText = errors.New("sfere: malformed key text")

// String returns the text form of k: "scope/category/id", each part
// percent-encoded so that every byte outside [A-Za-z0-9_~-] becomes %XX.
// The text form is plain ASCII with no '/', '.', '*', '>' or space inside a
// part, and [ParseKey] turns it back into k for any strings.
func (k Key) String() string {
	var b strings.Builder
	b.Grow(len(k.Scope) + len(k.Category) + len(k.ID) + 2)
	escapePart(&b, k.Scope)
	b.WriteByte('/')
	escapePart(&b, k.Category)
	b.WriteByte('/')
	escapePart(&b, k.ID)
	return b.String()
}

// MarshalText implements [encoding.TextMarshaler] with the form of [Key.String].
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParseKey].
func (k *Key) UnmarshalText(text []byte) error {
	parsed, err := ParseKey(string(text))
	if err != nil {
		return err
	}
	*k = parsed
	return nil
}

// ParseKey parses the text form written by [Key.String].
func ParseKey(text string) (Key, error) {
	p, err := ParsePattern(text)
	if err != nil {
		return Key{}, err
	}
	k, ok := p.exactKey()
	if !ok {
		return Key{}, fmt.Errorf("%w: %q: a key has no wildcard (write a literal * as %%2A)", ErrBadText, text)
	}
	return k, nil
}

// Match reports whether other is k; it lets a Key serve as an exclusion.
func (k Key) Match(other Key) bool { return k == other }

// Pattern returns the pattern that matches k and nothing else.
func (k Key) Pattern() Pattern {
	return Pattern{Scope: Exactly(k.Scope), Category: Exactly(k.Category), ID: Exactly(k.ID)}
}

func keepByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '~'
}

const hexDigits = "0123456789ABCDEF"

func escapePart(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if keepByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xF])
	}
}

func unescapePart(s string) (string, error) {
	var out []byte // nil until the first escape: until then, s as it is
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '%':
			if i+2 >= len(s) {
				return "", errors.New("truncated %-escape")
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", fmt.Errorf("bad %%-escape %q", s[i:i+3])
			}
			if out == nil {
				out = append(make([]byte, 0, len(s)), s[:i]...)
			}
			out = append(out, byte(v))
			i += 2
		case !keepByte(c):
			return "", fmt.Errorf("byte %q must be percent-encoded", c)
		case out != nil:
			out = append(out, c)
		}
	}
	if out == nil {
		return s, nil
	}
	return string(out), nil
}
