package lobby

import (
	"github.com/sfere-go/sfere"
)

// ChatSelector is where the lobby appends chat lines on every page.
const ChatSelector = "#messages"

// ChatLines renders chat lines as the lobby broadcasts them: its "chat"
// template, the name and the text escaped by html/template. It is for
// tools that must send what the lobby sends (the load tool's lobby
// payload in bench/cmd/sfere-bench-server); the lobby itself renders
// through its views.
type ChatLines struct{ v *views }

// NewChatLines parses the lobby's templates.
func NewChatLines() (*ChatLines, error) {
	v, err := newViews("", "", 0)
	if err != nil {
		return nil, err
	}
	return &ChatLines{v: v}, nil
}

// Line renders text said by name as the element the lobby appends at
// [ChatSelector].
func (c *ChatLines) Line(name, text string) (string, error) { return c.v.chatLine(name, text) }

// HubHistory is the history a lobby run with opts gives its hub (zero
// without one): every event then carries its position as its SSE id, and,
// with the visible heartbeat, a patch of the page's position signal.
func HubHistory(opts Options) sfere.HistoryOptions {
	opts = opts.withDefaults()
	if opts.History <= 0 {
		return sfere.HistoryOptions{}
	}
	h := sfere.HistoryOptions{Size: opts.History, MaxAge: opts.HistoryAge, MaxBytes: max(opts.HistoryBytes, 0)}
	if !opts.HiddenHeartbeat {
		h.PositionSignal = positionSignal // what the watchdog reopens from
	}
	return h
}
