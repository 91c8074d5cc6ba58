package main

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"time"
)

// sseEvent is one server-sent event as a browser's EventSource parser sees
// it (comments dropped).
type sseEvent struct {
	typ   string
	data  []string
	id    string
	hasID bool
	retry time.Duration // 0: none
	at    time.Time
}

// readSSE reads an SSE body and hands every event to emit, the moment the
// blank line that ends it arrives. A partial event at a broken end is
// dropped, as a browser drops it. It returns the error that ended the body
// (io.EOF for a clean end) or the error emit returned.
func readSSE(r io.Reader, emit func(sseEvent) error) error {
	br := bufio.NewReaderSize(r, 32<<10)
	var cur sseEvent
	fields := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if fields {
				cur.at = time.Now()
				if err := emit(cur); err != nil {
					return err
				}
			}
			cur, fields = sseEvent{}, false
			continue
		}
		if line[0] == ':' {
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "event":
			cur.typ = value
		case "data":
			cur.data = append(cur.data, value)
		case "id":
			if !strings.ContainsRune(value, 0) {
				cur.id, cur.hasID = value, true
			}
		case "retry":
			if ms, err := strconv.ParseUint(value, 10, 31); err == nil {
				cur.retry = time.Duration(ms) * time.Millisecond
			}
		default:
			continue
		}
		fields = true
	}
}
