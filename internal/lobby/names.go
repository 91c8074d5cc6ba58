package lobby

import (
	"encoding/hex"
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
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
	errNamePRECIS     = errors.New("names cannot contain unassigned characters or characters a nickname may not hold (RFC 8266)")
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
//   - at most [MaxCombiningRun] combining marks in a row;
//   - the PRECIS Nickname profile (RFC 8266, [precis.Nickname]) must accept
//     the result: it refuses unassigned code points and the characters
//     its FreeformClass disallows (old Hangul jamo, and the ignorable and
//     contextual characters the rules above already refuse).
//
// The name it returns is the display name: the user's own spelling, with
// only the changes above (it keeps case and is not normalized, so "PHIL"
// stays "PHIL" and "ｐｈｉｌ" stays fullwidth). Names are compared as
// identities by [nameIdentity], never byte for byte.
//
// The policy does not catch look-alike letters of different scripts
// (Cyrillic "а" for Latin "a"); see SECURITY.md.
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
	if _, err := precis.Nickname.CompareKey(name); err != nil {
		return "", errNamePRECIS
	}
	return name, nil
}

// nameIdentity returns the identity of a display name returned by
// [cleanName]: its comparison key under the PRECIS Nickname profile (RFC
// 8266's comparison: non-ASCII spaces mapped, spaces collapsed and trimmed,
// NFKC normalization, lower case). Two names
// are the same person's name exactly when their keys are equal: "PHIL",
// "Phil", "ｐｈｉｌ" (fullwidth) and "phil" share the key "phil", and so do
// "Zoë" written with a precomposed ë and with e + U+0308. Reserve, look up
// and compare names by this key; show the display name.
//
// Nickname rather than UsernameCaseMapped (RFC 8265): usernames are
// identifiers for logging in and refuse spaces, symbols and most
// punctuation ("Zoë O'Neil", "❤" would be refused), while RFC 8266 is
// the profile for the names people pick for themselves in chat rooms,
// which is what the lobby's names are.
//
// nameIdentity never fails for a name cleanName accepted (cleanName checks
// that the key exists). For a string PRECIS refuses it returns the string
// unchanged; that cannot equal any accepted name's key, since every key is
// itself accepted by PRECIS (keys are stable: a key's key is itself).
func nameIdentity(name string) string {
	key, err := precis.Nickname.CompareKey(name)
	if err != nil {
		return name
	}
	return key
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
