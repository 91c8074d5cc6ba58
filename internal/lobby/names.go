package lobby

import (
	"encoding/hex"
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on user text, in runes (characters).
const (
	MaxNameRunes    = 32
	MaxMessageRunes = 1000
)

// Messages shown for rejected text.
var (
	errNameEmpty      = errors.New("please enter a name")
	errNameLong       = errors.New("names are at most 32 characters")
	errNameControl    = errors.New("names cannot contain control characters")
	errMessageEmpty   = errors.New("messages cannot be empty")
	errMessageLong    = errors.New("messages are at most 1000 characters")
	errMessageControl = errors.New("messages cannot contain control characters")
)

// cleanName trims a requested name and checks it: 1-32 runes of valid
// UTF-8 with no control or bidirectional-override characters.
func cleanName(raw string) (string, error) {
	name := strings.TrimSpace(raw)
	switch n := utf8.RuneCountInString(name); {
	case n == 0:
		return "", errNameEmpty
	case n > MaxNameRunes:
		return "", errNameLong
	}
	if !cleanText(name) {
		return "", errNameControl
	}
	return name, nil
}

// cleanMessage trims a chat message and checks it: 1-1000 runes, no
// control characters.
func cleanMessage(raw string) (string, error) {
	text := strings.TrimSpace(raw)
	switch n := utf8.RuneCountInString(text); {
	case n == 0:
		return "", errMessageEmpty
	case n > MaxMessageRunes:
		return "", errMessageLong
	}
	if !cleanText(text) {
		return "", errMessageControl
	}
	return text, nil
}

// cleanText reports whether s is valid UTF-8 without control characters
// or the invisible characters that reorder text (which could make one name
// look like another).
func cleanText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || isBidiControl(r) {
			return false
		}
	}
	return true
}

func isBidiControl(r rune) bool {
	return r == '\u061C' || r == '\u200E' || r == '\u200F' ||
		('\u202A' <= r && r <= '\u202E') || ('\u2066' <= r && r <= '\u2069')
}

// participantID is the element id of a name's list item: "participant-"
// and the name's bytes in hex. The id is plain [0-9a-f], so no name can
// form a selector that reaches another element, and distinct names never
// share an id.
func participantID(name string) string {
	return "participant-" + hex.EncodeToString([]byte(name))
}
