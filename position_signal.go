package sfere

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// ErrBadSignalName is returned (wrapped) for a signal name the page could
// not read as a Datastar signal: it must be a letter or underscore
// followed by letters, digits or underscores. Start it with an underscore
// and Datastar keeps it out of the signals a page sends back.
var ErrBadSignalName = errors.New("sfere: bad signal name")

// checkSignalName says why name is not a usable signal name, if it is not.
func checkSignalName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrBadSignalName)
	}
	for i, r := range name {
		letter := r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !letter && (i == 0 || r < '0' || r > '9') {
			return fmt.Errorf("%w: %q: want a letter or _ then letters, digits or _", ErrBadSignalName, name)
		}
	}
	return nil
}

// patchSignalsHead is how every signal patch the hub writes by itself
// begins (the Datastar SSE protocol, as datastar-go writes it).
const patchSignalsHead = "event: datastar-patch-signals\ndata: signals {"

// appendPositionEvent appends to dst a Datastar event that sets signal to
// pos; with id it carries pos as its SSE id too, as its last field.
func appendPositionEvent(dst []byte, signal, pos string, id bool) []byte {
	dst = append(dst, patchSignalsHead...)
	dst = strconv.AppendQuote(dst, signal) // a checked name: letters, digits, _
	dst = append(dst, ':')
	dst = appendJSONString(dst, pos)
	dst = append(dst, "}\n"...)
	if id {
		dst = append(dst, "id: "...)
		dst = append(dst, pos...)
		dst = append(dst, '\n')
	}
	return append(dst, '\n')
}

// appendJSONString appends s as a JSON string. Positions are an epoch (a
// hex number, or a shared log's name) and an offset: quoting them as JSON
// keeps even a strange epoch from breaking the event.
func appendJSONString(dst []byte, s string) []byte {
	b, err := json.Marshal(s)
	if err != nil { // a string always marshals
		panic("sfere: marshal a string: " + err.Error())
	}
	return append(dst, b...)
}

// withPosition is [message.withID] for a hub whose history names a
// position signal: the copy ends with an event that sets the signal to
// id and carries id as its SSE id, so the page reads the position of the
// last event it applied (the Datastar client keeps ids to itself) at the
// moment the client takes the id. Without a signal it is withID.
func (m *message) withPosition(id, signal string) *message {
	if signal == "" || m.idAt < 0 {
		return m.withID(id)
	}
	data := make([]byte, 0, len(m.data)+len(patchSignalsHead)+len(signal)+2*len(id)+16)
	data = append(data, m.data...)
	c := *m
	c.data, c.packed = appendPositionEvent(data, signal, id, true), nil
	c.idAt = len(m.data)
	return &c
}
