package sfere

import "bytes"

// Positions inside a message. One broadcast or send of several effects is
// one message, written to the client as several SSE events (Datastar has
// one event per element patch, signal patch or script). The history gives
// each event a position of its own ([Position.Part]) so that a client cut
// off between two of them resumes after the last one it read.

// withPosition returns a copy of m in which every event carries a
// position, as its last field: the k-th of a message of n events carries
// pos with Part k, the last one pos itself. A client takes an id as it
// reads it, so one cut off anywhere in the message resumes exactly after
// the last event it read (see [Position.Part]). With a signal, the hub's
// history names a position signal: each event is followed by one that
// sets the signal to its position and carries that position as its id,
// so the page reads the position of the last event it applied (the
// Datastar client keeps ids to itself) at the moment the client takes the
// id. Comments carry nothing. m itself is returned if it has no event.
func (m *message) withPosition(pos Position, signal string) *message {
	return m.withPositions(pos, signal, false)
}

// asOpening is withPosition for a stream's opening (its initial effects,
// rendered when the newest event was the one at pos): the k-th of its
// events but the last carries pos with Part k and [Position.Opening], the
// last one pos itself, so a client cut off inside it holds an id that says
// so instead of an older one it had (see [ErrPositionInOpening]).
func (m *message) asOpening(pos Position, signal string) *message {
	return m.withPositions(pos, signal, true)
}

// withPositions is withPosition, or asOpening if opening is set.
func (m *message) withPositions(pos Position, signal string, opening bool) *message {
	if m.idAt < 0 {
		return m
	}
	extra := len("id: \n") + len(pos.Epoch) + 30
	if signal != "" {
		extra += len(patchSignalsHead) + len(signal) + len(pos.Epoch) + 40
	}
	data := make([]byte, 0, len(m.data)+extra*m.events())
	part := 0
	for at := 0; at < len(m.data); {
		end := blockEnd(m.data, at)
		block := m.data[at:end]
		last := at == m.idAt
		at = end
		if !isEvent(block) { // a comment, or a stray blank line
			data = append(data, block...)
			continue
		}
		part++
		p := pos
		if !last {
			p.Part, p.Opening = part, opening
		}
		if signal != "" {
			data = append(data, block...)
			data = appendPositionEvent(data, signal, p, true)
			continue
		}
		data = append(data, block[:len(block)-1]...) // up to the blank line
		data = appendIDLine(data, p)
		data = append(data, '\n')
	}
	c := *m
	c.data, c.packed = data, nil
	c.idAt = lastEvent(data)
	return &c
}

// blockEnd returns the end of the SSE block of data that begins at at:
// just past the blank line that ends it (len(data) if none does). A blank
// line where a block would begin (datastar-go ends its events with one
// more) is a block of its own.
func blockEnd(data []byte, at int) int {
	if data[at] == '\n' {
		return at + 1
	}
	i := bytes.Index(data[at:], []byte("\n\n"))
	if i < 0 {
		return len(data)
	}
	return at + i + 2
}

// isEvent reports whether an SSE block is an event: not a comment, nor
// a blank line.
func isEvent(block []byte) bool { return len(block) > 0 && block[0] != ':' && block[0] != '\n' }

// events counts the events of m.
func (m *message) events() int {
	n := 0
	for at := 0; at < len(m.data); {
		end := blockEnd(m.data, at)
		if isEvent(m.data[at:end]) {
			n++
		}
		at = end
	}
	return n
}

// lastEvent returns where the last event of data begins (-1 if it has
// none).
func lastEvent(data []byte) int {
	last := -1
	for at := 0; at < len(data); {
		end := blockEnd(data, at)
		if isEvent(data[at:end]) {
			last = at
		}
		at = end
	}
	return last
}

// after returns the part of m, as a history wrote it (withPosition), that
// follows the part-th event that carries an id: what a client that read
// that far has not had. ok is false if m has no such event or if it is
// m's last (a part names a place inside a message, never its end).
func (m *message) after(part int) (_ *message, ok bool) {
	seen := 0
	for at := 0; at < len(m.data) && part > 0; {
		end := blockEnd(m.data, at)
		if block := m.data[at:end]; bytes.HasPrefix(block, []byte("id: ")) || bytes.Contains(block, []byte("\nid: ")) {
			seen++
		}
		at = end
		if seen < part {
			continue
		}
		rest := m.data[at:]
		last := lastEvent(rest)
		if last < 0 {
			return nil, false
		}
		return &message{data: rest, idAt: last, offset: m.offset, close: m.close}, true
	}
	return nil, false
}
