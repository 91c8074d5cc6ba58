package ssetest

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Event is one SSE event as the server sent it, or one comment line.
//
// Unlike a browser, the client keeps what a browser would drop, because a
// test checks what the server wrote: an event is recorded as soon as a
// block has any known field (event, data, id, retry), even without data;
// its Type is "" when the block names none (a browser says "message"); and
// every comment line is an Event of its own, in order with the others.
type Event struct {
	// Seq is the event's position in its stream, from 0.
	Seq int
	// At is when the line that completed the event arrived.
	At time.Time

	// IsComment marks a comment line (": text"); Comment is its text,
	// without the colon and one leading space. A comment has no other
	// field.
	IsComment bool
	Comment   string

	// Type is the event field ("" if the block had none).
	Type string
	// Data holds the data lines, in order, without "data: ".
	Data []string
	// ID is the id field, if HasID; an empty id clears a browser's last
	// event id.
	ID    string
	HasID bool
	// Retry is the retry field, if HasRetry (a field that is not a
	// number of milliseconds is ignored, as browsers do).
	Retry    time.Duration
	HasRetry bool
}

// Text returns the data lines joined with "\n", as a browser hands them
// to its listener.
func (e Event) Text() string { return strings.Join(e.Data, "\n") }

// String returns the event in its wire form, one field a line (event, id,
// retry, then data), without the blank line that ends it; a comment is
// ": text".
func (e Event) String() string {
	if e.IsComment {
		return ": " + e.Comment
	}
	var b strings.Builder
	line := func(field, value string) {
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(field)
		b.WriteString(": ")
		b.WriteString(value)
	}
	if e.Type != "" {
		line("event", e.Type)
	}
	if e.HasID {
		line("id", e.ID)
	}
	if e.HasRetry {
		line("retry", strconv.FormatInt(e.Retry.Milliseconds(), 10))
	}
	for _, d := range e.Data {
		line("data", d)
	}
	return b.String()
}

// A Match selects events for [Client.Next] and [Client.Wait]. Desc says
// which, in failure messages.
type Match struct {
	Desc string
	Test func(Event) bool
}

// Any matches every event and comment.
var Any = Match{Desc: "of any kind", Test: func(Event) bool { return true }}

// Containing matches an event whose wire form ([Event.String]) contains
// text: "event: datastar-patch-elements", `elements <p id="x">`, ": hello".
func Containing(text string) Match {
	return Match{Desc: fmt.Sprintf("containing %q", text), Test: func(e Event) bool {
		return strings.Contains(e.String(), text)
	}}
}

// OfType matches events whose event field is typ.
func OfType(typ string) Match {
	return Match{Desc: fmt.Sprintf("of type %q", typ), Test: func(e Event) bool {
		return !e.IsComment && e.Type == typ
	}}
}

// CommentIs matches a comment whose text is exactly text.
func CommentIs(text string) Match {
	return Match{Desc: fmt.Sprintf("commenting %q", text), Test: func(e Event) bool {
		return e.IsComment && e.Comment == text
	}}
}

// Where matches the events test accepts; desc names them.
func Where(desc string, test func(Event) bool) Match {
	return Match{Desc: desc, Test: test}
}

// ReadEvents reads an SSE body as a [Client] does, for a test that reads
// a stream itself (a load probe): it hands each event and comment to emit
// as it completes, stamped with its arrival time (Seq is left 0), and each
// line as it arrived (without its LF) to line, if line is not nil, until
// the body ends or emit returns an error. Lines end with LF or CRLF (a
// lone CR, which the format also allows, is not recognised: no server here
// writes it). It returns the error that stopped the reading (io.EOF for a
// body that ended) or the one emit returned.
func ReadEvents(r io.Reader, emit func(Event) error, line func(string)) error {
	return parse(r, emit, line)
}

// parse is [ReadEvents].
func parse(r io.Reader, emit func(Event) error, keep func(string)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		cur     Event
		pending bool // cur has a field
	)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			// A partial last line is not a line: the body broke or
			// ended mid-event, and a browser would drop it too.
			return err
		}
		now := time.Now()
		line = strings.TrimSuffix(line, "\n")
		if keep != nil {
			keep(line)
		}
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			if pending {
				cur.At = now
				if err := emit(cur); err != nil {
					return err
				}
			}
			cur, pending = Event{}, false
			continue
		}
		if text, ok := strings.CutPrefix(line, ":"); ok {
			if err := emit(Event{At: now, IsComment: true, Comment: strings.TrimPrefix(text, " ")}); err != nil {
				return err
			}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			cur.Type = value
		case "data":
			cur.Data = append(cur.Data, value)
		case "id":
			if strings.ContainsRune(value, 0) {
				continue // ignored, as the format says
			}
			cur.ID, cur.HasID = value, true
		case "retry":
			ms, err := strconv.ParseUint(value, 10, 63)
			if err != nil {
				continue
			}
			cur.Retry, cur.HasRetry = time.Duration(ms)*time.Millisecond, true
		default:
			continue // unknown fields are ignored
		}
		pending = true
	}
}

// Parse reads a whole SSE text (a golden file, a rendered message) into
// its events and comments, as a [Client] records them. A last event not
// ended by a blank line is dropped, as a browser drops it.
func Parse(r io.Reader) ([]Event, error) {
	var events []Event
	err := parse(r, func(e Event) error {
		e.Seq = len(events)
		events = append(events, e)
		return nil
	}, nil)
	if err != io.EOF {
		return events, err
	}
	return events, nil
}
