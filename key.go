package sfere

import (
	"errors"
	"fmt"
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
	parts, err := splitText(text)
	if err != nil {
		return Key{}, err
	}
	var k Key
	for i, dst := range []*string{&k.Scope, &k.Category, &k.ID} {
		if parts[i] == wildcardText {
			return Key{}, fmt.Errorf("%w: %q: a key has no wildcard (write a literal * as %%2A)", ErrBadText, text)
		}
		if *dst, err = unescapePart(parts[i]); err != nil {
			return Key{}, fmt.Errorf("%w: %q: %v", ErrBadText, text, err)
		}
	}
	return k, nil
}

// Match reports whether other is k; it lets a Key serve as an exclusion.
func (k Key) Match(other Key) bool { return k == other }

// Pattern returns the pattern that matches k and nothing else.
func (k Key) Pattern() Pattern {
	return Pattern{Scope: Exactly(k.Scope), Category: Exactly(k.Category), ID: Exactly(k.ID)}
}

const wildcardText = "*"

func splitText(text string) ([3]string, error) {
	var parts [3]string
	first := strings.IndexByte(text, '/')
	if first < 0 {
		return parts, fmt.Errorf("%w: %q: want scope/category/id", ErrBadText, text)
	}
	second := strings.IndexByte(text[first+1:], '/')
	if second < 0 {
		return parts, fmt.Errorf("%w: %q: want scope/category/id", ErrBadText, text)
	}
	second += first + 1
	if strings.IndexByte(text[second+1:], '/') >= 0 {
		return parts, fmt.Errorf("%w: %q: more than three parts", ErrBadText, text)
	}
	parts[0], parts[1], parts[2] = text[:first], text[first+1:second], text[second+1:]
	return parts, nil
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
	if !strings.Contains(s, "%") {
		for i := 0; i < len(s); i++ {
			if !keepByte(s[i]) {
				return "", fmt.Errorf("byte %q must be percent-encoded", s[i])
			}
		}
		return s, nil
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) {
				return "", errors.New("truncated %-escape")
			}
			hi, lo := unhex(s[i+1]), unhex(s[i+2])
			if hi < 0 || lo < 0 {
				return "", fmt.Errorf("bad %%-escape %q", s[i:i+3])
			}
			out = append(out, byte(hi<<4|lo))
			i += 2
		case keepByte(c):
			out = append(out, c)
		default:
			return "", fmt.Errorf("byte %q must be percent-encoded", c)
		}
	}
	return string(out), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	}
	return -1
}
