// Package chat makes the chat lines the load tools broadcast: what the
// lobby (internal/lobby) sends when someone says something, rendered by
// the lobby's own template, with text drawn from a chat-like distribution
// and a load tool's stamp at its end.
//
// A line is the lobby's "chat" element, <p class="chat-message"><strong>
// name</strong>: text</p>, html/template-escaped. The name is one of 32
// people, some of whom talk much more than others (a Zipf draw). The text
// is 1 to 40 words (log-normal, median 5), each drawn from 500 chat
// words by a Zipf-Mandelbrot law over their frequency order (s = 1.1,
// q = 2.7, the classic fit for English), with the first letter
// capitalized half the time, now and then a comma, and an ending (none,
// ?, !, ., ...) drawn too; the text then ends with the stamp " ^seq:ts^"
// (decimal sequence number, send time in Unix nanoseconds) that the load
// tool reads. Every line is drawn from its own seed (the sequence
// number), so the same seq gives the same words, and no two consecutive
// lines share more than chance gives.
package chat

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/sfere-go/sfere/internal/lobby"
)

// people are who talks in the load tools' lobby, the first the most.
var people = []string{
	"maria", "jun", "alex", "priya", "tom", "fatima", "lukas", "sofia",
	"omar", "emma", "kenji", "olivia", "mateo", "chloe", "ivan", "amara",
	"noah", "lea", "diego", "hana", "samuel", "zoe", "arjun", "mia",
	"elif", "jack", "nadia", "leo", "ines", "felix", "yuki", "ben",
}

// Lines renders chat lines.
type Lines struct {
	render *lobby.ChatLines
}

// New returns a renderer of chat lines, with the lobby's templates.
func New() (*Lines, error) {
	r, err := lobby.NewChatLines()
	if err != nil {
		return nil, err
	}
	return &Lines{render: r}, nil
}

// Selector is where the lobby appends chat lines.
const Selector = lobby.ChatSelector

// Line returns chat line seq, its text ending with stamp (which must need
// no escaping): the element the lobby would broadcast.
func (l *Lines) Line(seq uint64, stamp string) (string, error) {
	name, text := Said(seq)
	return l.render.Line(name, text+" "+stamp)
}

// Said returns who says line seq, and what (without a stamp).
func Said(seq uint64) (name, text string) {
	r := rand.New(rand.NewPCG(seq, 0x6c6f626279))
	who := rand.NewZipf(r, 1.2, 2, uint64(len(people)-1))
	what := rand.NewZipf(r, 1.1, 2.7, uint64(len(words)-1))
	n := int(math.Round(math.Exp(math.Log(5) + 0.8*r.NormFloat64())))
	n = min(max(n, 1), 40)
	var b strings.Builder
	for i := range n {
		w := words[what.Uint64()]
		if i == 0 && r.IntN(2) == 0 {
			w = strings.ToUpper(w[:1]) + w[1:]
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(w)
		if i < n-1 && r.IntN(20) == 0 {
			b.WriteByte(',')
		}
	}
	switch k := r.IntN(20); {
	case k < 4:
		b.WriteByte('?')
	case k < 6:
		b.WriteByte('!')
	case k < 9:
		b.WriteByte('.')
	case k < 10:
		b.WriteString("...")
	}
	return people[who.Uint64()], b.String()
}

// Stamp is the load tool's stamp: ^seq:ts^.
func Stamp(seq uint64, ts int64) string {
	return "^" + strconv.FormatUint(seq, 10) + ":" + strconv.FormatInt(ts, 10) + "^"
}
