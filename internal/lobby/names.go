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
	// MaxCombiningRun is the most combining marks allowed in a row (after
	// one base character). Real scripts stack a few (Vietnamese two,
	// Hebrew and Tibetan up to four or five); "Zalgo" text stacks dozens
	// to paint over the lines above and below it.
	MaxCombiningRun = 8
)

// Messages shown for rejected text.
var (
	errNameEmpty      = errors.New("please enter a name")
	errNameLong       = errors.New("names are at most 32 characters")
	errNameControl    = errors.New("names cannot contain control characters")
	errNameInvisible  = errors.New("names cannot contain invisible or formatting characters (zero-width, direction controls, line separators, private-use)")
	errNameNoVisible  = errors.New("names need at least one letter, digit, punctuation mark or symbol")
	errNameMarks      = errors.New("names cannot stack more than 8 combining marks on one character")
	errMessageEmpty   = errors.New("messages cannot be empty")
	errMessageLong    = errors.New("messages are at most 1000 characters")
	errMessageControl = errors.New("messages cannot contain control characters")
	errMessageMarks   = errors.New("messages cannot stack more than 8 combining marks on one character")
)

// cleanName trims a requested name and checks it against the name policy
// (see SECURITY.md): 1-32 runes of valid UTF-8 in which
//   - control characters (Cc: line breaks, tabs, NUL...) are refused;
//   - invisible and formatting characters are refused: every Cf character
//     (direction controls such as U+202E, zero-width space and joiners,
//     soft hyphen, BOM, tags), line and paragraph separators, private-use
//     characters, noncharacters and the other default-ignorable code points
//     (Hangul fillers, combining grapheme joiner...), because they let one
//     name look like another or like nothing;
//   - emoji variation selectors (U+FE0E, U+FE0F) are dropped, so "❤️" and
//     "❤" are one name;
//   - every run of spaces (any Unicode space) becomes one ASCII space;
//   - at least one letter, digit, punctuation mark or symbol is required;
//   - at most [MaxCombiningRun] combining marks in a row.
//
// A name is an identity: two different names must look different. The
// policy does not catch look-alike letters of different scripts (Cyrillic
// "а" for Latin "a"); see SECURITY.md.
func cleanName(raw string) (string, error) {
	if !utf8.ValidString(raw) {
		return "", errNameControl
	}
	var b strings.Builder
	b.Grow(len(raw))
	space, visible, marks := false, false, 0
	for _, r := range strings.TrimSpace(raw) {
		switch {
		case unicode.IsControl(r):
			return "", errNameControl
		case r == '\uFE0E' || r == '\uFE0F':
			continue
		case invisibleInName(r):
			return "", errNameInvisible
		case unicode.Is(unicode.Zs, r):
			space = true
			marks = 0
			continue
		}
		if unicode.In(r, unicode.Mn, unicode.Me) {
			if marks++; marks > MaxCombiningRun {
				return "", errNameMarks
			}
		} else {
			marks = 0
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		if unicode.In(r, unicode.L, unicode.N, unicode.P, unicode.S) && r != '\u2800' {
			visible = true
		}
		b.WriteRune(r)
	}
	name := b.String()
	switch n := utf8.RuneCountInString(name); {
	case n == 0:
		return "", errNameEmpty
	case n > MaxNameRunes:
		return "", errNameLong
	case !visible:
		return "", errNameNoVisible
	}
	return name, nil
}

// invisibleInName reports whether r is a character a name may not hold
// because it is invisible, formatting, or a line break in disguise.
func invisibleInName(r rune) bool {
	return unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Co, unicode.Cs,
		unicode.Noncharacter_Code_Point, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
}

// cleanMessage trims a chat message and checks it against the message
// policy (see SECURITY.md): 1-1000 runes of valid UTF-8, no control
// characters (Cc: line breaks, tabs, NUL...), no noncharacters, and at most
// [MaxCombiningRun] combining marks in a row.
//
// Unlike names, messages may hold direction controls and zero-width
// characters: right-to-left writing needs the marks U+200E/U+200F and
// Persian needs the zero-width non-joiner, and emoji sequences need the
// zero-width joiner. They are harmless there: the text is HTML-escaped,
// and each chat line is its own paragraph (a <p>), which ends every
// direction embedding a message opens, so a message can only reorder
// itself, never its author's name or another line.
func cleanMessage(raw string) (string, error) {
	if !utf8.ValidString(raw) {
		return "", errMessageControl
	}
	text := strings.TrimSpace(raw)
	switch n := utf8.RuneCountInString(text); {
	case n == 0:
		return "", errMessageEmpty
	case n > MaxMessageRunes:
		return "", errMessageLong
	}
	marks := 0
	for _, r := range text {
		switch {
		case unicode.IsControl(r) || unicode.Is(unicode.Noncharacter_Code_Point, r) || unicode.Is(unicode.Cs, r):
			return "", errMessageControl
		case unicode.In(r, unicode.Mn, unicode.Me):
			if marks++; marks > MaxCombiningRun {
				return "", errMessageMarks
			}
		default:
			marks = 0
		}
	}
	return text, nil
}

// participantID is the element id of a name's list item: "participant-"
// and the name's bytes in hex. The id is plain [0-9a-f], so no name can
// form a selector that reaches another element, and distinct names never
// share an id.
func participantID(name string) string {
	return "participant-" + hex.EncodeToString([]byte(name))
}
