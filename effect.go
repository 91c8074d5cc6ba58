package sfere

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/starfederation/datastar-go/datastar"
)

// Kind names what an [Effect] does.
type Kind string

// The kinds of [Effect].
const (
	// KindPatchElements patches HTML into the page (Datastar patch-elements).
	KindPatchElements Kind = "patch-elements"
	// KindRemoveElements removes the elements a selector matches.
	KindRemoveElements Kind = "remove-elements"
	// KindPatchSignals merges JSON into the page's signals.
	KindPatchSignals Kind = "patch-signals"
	// KindExecuteScript runs a script in the page.
	KindExecuteScript Kind = "execute-script"
	// KindComment writes an SSE comment line, which clients ignore: the
	// heartbeat's payload.
	KindComment Kind = "comment"
	// KindCloseStream ends the stream after everything before it was written.
	KindCloseStream Kind = "close-stream"
)

// Effect is one thing to do to a client's page. Effects are plain values
// that marshal to JSON (so they can travel between nodes); build them with
// the constructors below. [Render] turns them into Datastar SSE events.
type Effect struct {
	Kind Kind `json:"kind"`
	// Selector targets elements (patch and remove); empty means "by the
	// id of each patched element".
	Selector string `json:"selector,omitempty"`
	// Mode is how patched elements land: outer (default), inner, replace,
	// prepend, append, before, after.
	Mode datastar.ElementPatchMode `json:"mode,omitempty"`
	// Elements is the HTML to patch. It is sent as written: escape user text.
	Elements string `json:"elements,omitempty"`
	// Signals is a JSON object to merge into the page's signals.
	Signals json.RawMessage `json:"signals,omitempty"`
	// OnlyIfMissing patches only the signals the page does not have yet.
	OnlyIfMissing bool `json:"onlyIfMissing,omitempty"`
	// Script is the JavaScript to run.
	Script string `json:"script,omitempty"`
	// Text is the comment's text.
	Text string `json:"text,omitempty"`
}

// PatchElements morphs elements into the page, each onto the element with
// the same id.
func PatchElements(elements string) Effect {
	return Effect{Kind: KindPatchElements, Elements: elements}
}

// PatchElementsAt patches elements relative to the elements selector
// matches, in the given mode (e.g. [datastar.ElementPatchModeAppend]).
func PatchElementsAt(selector string, mode datastar.ElementPatchMode, elements string) Effect {
	return Effect{Kind: KindPatchElements, Selector: selector, Mode: mode, Elements: elements}
}

// AppendElements appends elements inside the element selector matches.
func AppendElements(selector, elements string) Effect {
	return PatchElementsAt(selector, datastar.ElementPatchModeAppend, elements)
}

// RemoveElements removes the elements selector matches.
func RemoveElements(selector string) Effect {
	return Effect{Kind: KindRemoveElements, Selector: selector}
}

// PatchSignals merges a JSON object into the page's signals.
func PatchSignals(signals json.RawMessage) Effect {
	return Effect{Kind: KindPatchSignals, Signals: signals}
}

// MarshalSignals is [PatchSignals] of v marshalled to JSON.
func MarshalSignals(v any) (Effect, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Effect{}, fmt.Errorf("sfere: marshal signals: %w", err)
	}
	return PatchSignals(b), nil
}

// ExecuteScript runs script in the page (sent as a self-removing <script>).
func ExecuteScript(script string) Effect {
	return Effect{Kind: KindExecuteScript, Script: script}
}

// Comment writes an SSE comment; clients ignore it and the page does not change.
func Comment(text string) Effect {
	return Effect{Kind: KindComment, Text: text}
}

// CloseStream ends the stream once the effects before it are written; its
// eviction has [CauseClosed] and [ErrClosedByApp].
func CloseStream() Effect {
	return Effect{Kind: KindCloseStream}
}

// ErrBadEffect is returned (wrapped) for an effect that cannot be rendered
// safely: an unknown kind or mode, signals that are not a JSON object, or
// a selector with a line break (which could forge SSE lines).
var ErrBadEffect = errors.New("sfere: bad effect")

// message is a rendered batch of effects: immutable bytes shared by every
// stream it is queued to.
type message struct {
	data       []byte
	idAt       int      // where in data the last event starts, for its id; -1: no event (comments only)
	offset     uint64   // its offset in the hub's history, if it was kept there
	close      bool     // ends with a close-stream effect
	heartbeat  bool     // a heartbeat's beat, not the app's traffic
	positioned bool     // carries the history's position without being kept there (a visible beat): skips admitting streams like an event
	track      *tracker // nil unless someone waits for the writes (the heartbeat)
}

// Render returns the Datastar SSE bytes of effects, in order, as the
// client will receive them.
func Render(effects ...Effect) ([]byte, error) {
	m, err := render(effects)
	if err != nil {
		return nil, err
	}
	return m.data, nil
}

func render(effects []Effect) (*message, error) {
	buf := renderBuffer{header: http.Header{}}
	sse := datastar.NewSSE(&buf, &http.Request{ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}})
	m := &message{idAt: -1}
	for i, e := range effects {
		if m.close {
			return nil, fmt.Errorf("%w: effect %d (%s) follows close-stream", ErrBadEffect, i, e.Kind)
		}
		if e.Kind != KindComment && e.Kind != KindCloseStream {
			m.idAt = buf.Len()
		}
		if err := renderOne(sse, &buf, e, m); err != nil {
			return nil, fmt.Errorf("%w: effect %d (%s): %v", ErrBadEffect, i, e.Kind, err)
		}
	}
	m.data = buf.Bytes()
	return m, nil
}

// retryField is an SSE block that sets the client's reconnection delay.
func retryField(d time.Duration) []byte {
	return fmt.Appendf(nil, "retry: %d\n\n", d.Milliseconds())
}

// withID returns a copy of m whose last event carries id (m itself if it
// has no event), as its last field: a client takes an id as it reads it,
// so one cut off before the end of the event must not have seen it.
func (m *message) withID(id string) *message {
	if m.idAt < 0 {
		return m
	}
	at := m.idAt + bytes.Index(m.data[m.idAt:], []byte("\n\n")) + 1
	data := make([]byte, 0, len(m.data)+len(id)+5)
	data = append(data, m.data[:at]...)
	data = append(data, "id: "...)
	data = append(data, id...)
	data = append(data, '\n')
	data = append(data, m.data[at:]...)
	c := *m
	c.data = data
	return &c
}

func renderOne(sse *datastar.ServerSentEventGenerator, buf *renderBuffer, e Effect, m *message) error {
	if strings.ContainsAny(e.Selector, "\r\n") {
		return errors.New("line break in selector")
	}
	switch e.Kind {
	case KindPatchElements:
		opts := []datastar.PatchElementOption{}
		if e.Selector != "" {
			opts = append(opts, datastar.WithSelector(e.Selector))
		}
		if e.Mode != "" {
			mode, err := datastar.ElementPatchModeFromString(string(e.Mode))
			if err != nil {
				return err
			}
			opts = append(opts, datastar.WithMode(mode))
		}
		return sse.PatchElements(oneLineBreak(e.Elements), opts...)
	case KindRemoveElements:
		if e.Selector == "" {
			return errors.New("remove needs a selector")
		}
		return sse.RemoveElement(e.Selector)
	case KindPatchSignals:
		var compact bytes.Buffer
		if err := json.Compact(&compact, e.Signals); err != nil {
			return fmt.Errorf("signals: %w", err)
		}
		if compact.Len() == 0 || compact.Bytes()[0] != '{' {
			return errors.New("signals must be a JSON object")
		}
		var opts []datastar.PatchSignalsOption
		if e.OnlyIfMissing {
			opts = append(opts, datastar.WithOnlyIfMissing(true))
		}
		return sse.PatchSignals(compact.Bytes(), opts...)
	case KindExecuteScript:
		return sse.ExecuteScript(oneLineBreak(e.Script))
	case KindComment:
		_, err := fmt.Fprintf(buf, ": %s\n\n", strings.ReplaceAll(oneLineBreak(e.Text), "\n", "\n: "))
		return err
	case KindCloseStream:
		m.close = true
		return nil
	}
	return fmt.Errorf("unknown kind %q", e.Kind)
}

// oneLineBreak turns every CR LF and lone CR into LF. SSE treats all three
// as line ends, and the datastar encoder splits lines on LF only, so a CR
// left in place would let text start a forged SSE line.
func oneLineBreak(s string) string {
	if !strings.Contains(s, "\r") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

// renderBuffer is the http.ResponseWriter the datastar encoder writes
// events into when rendering effects once for many streams.
type renderBuffer struct {
	bytes.Buffer
	header http.Header
}

func (b *renderBuffer) Header() http.Header { return b.header }

func (b *renderBuffer) WriteHeader(int) {}

func (b *renderBuffer) Flush() {}
