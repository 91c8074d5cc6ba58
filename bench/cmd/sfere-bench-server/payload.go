package main

import (
	"fmt"
	"log"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/lobby"

	"github.com/sfere-go/sfere/bench/internal/chat"
	"github.com/sfere-go/sfere/bench/internal/wire"
)

// payload is what each broadcast appends, and where.
type payload struct {
	selector string
	// html returns broadcast seq's element, sent at ts, carrying the
	// stamp ^seq:ts^ (size is the load tool's -size, if it applies).
	html func(seq uint64, ts int64, size int) string
	// history is what a single sfere node keeps, for its events' ids.
	history sfere.HistoryOptions
}

// newPayload returns the payload -payload names: dots or lobby.
func newPayload(name string) (payload, error) {
	switch name {
	case "dots":
		return payload{selector: wire.Selector, html: wire.HTML}, nil
	case "lobby":
		lines, err := chat.New()
		if err != nil {
			return payload{}, err
		}
		html := func(seq uint64, ts int64, _ int) string {
			line, err := lines.Line(seq, chat.Stamp(seq, ts))
			if err != nil { // the lobby's template, with a name and a text: it does not fail
				log.Fatalf("chat line %d: %v", seq, err)
			}
			return line
		}
		return payload{selector: chat.Selector, html: html, history: lobby.HubHistory(lobby.Options{})}, nil
	}
	return payload{}, fmt.Errorf("%q: want dots or lobby", name)
}
