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
func appendPositionEvent(dst []byte, signal string, pos Position, id bool) []byte {
	dst = append(dst, patchSignalsHead...)
	dst = strconv.AppendQuote(dst, signal) // a checked name: letters, digits, _
	dst = append(dst, ':')
	dst = appendJSONString(dst, pos.String())
	dst = append(dst, "}\n"...)
	if id {
		dst = appendIDLine(dst, pos)
	}
	return append(dst, '\n')
}

// appendIDLine appends the SSE id field that carries pos.
func appendIDLine(dst []byte, pos Position) []byte {
	dst = append(dst, "id: "...)
	dst = pos.appendText(dst)
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
