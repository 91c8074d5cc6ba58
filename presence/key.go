package presence

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/sfere-go/sfere"
)

// StreamKey returns the key of one stream of person in room:
// category room, scope person, id conn.
func StreamKey(room, person, conn string) sfere.Key {
	return sfere.NewKey(person, room, conn)
}

// Everyone returns the pattern of every stream in room: (*, room, *). It
// is the cheapest pattern a store matches (one category).
func Everyone(room string) sfere.Pattern { return sfere.InCategory(room) }

// StreamsOf returns the pattern of every stream of person in room:
// (person, room, *).
func StreamsOf(room, person string) sfere.Pattern {
	return sfere.NewPattern(sfere.Exactly(person), sfere.Exactly(room), sfere.Any)
}

// newConnID returns a random connection id: 16 hex digits.
func newConnID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// excluding matches every key not in keys: broadcast with it as the
// exclusion, a pattern reaches exactly the streams in keys.
type excluding sfere.KeySet

func (x excluding) Match(k sfere.Key) bool {
	_, in := x[k]
	return !in
}
