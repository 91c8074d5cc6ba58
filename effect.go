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
	// Namespace is the XML namespace the patched elements are parsed in:
	// empty or html (the default), svg or mathml. See [Effect.InNamespace].
	Namespace datastar.Namespace `json:"namespace,omitempty"`
	// ViewTransition makes the client apply a patch or a removal inside a
	// view transition (the View Transition API, where the browser has it).
	// See [Effect.WithViewTransition].
	ViewTransition bool `json:"useViewTransition,omitempty"`
	// ViewTransitionSelector scopes the view transition to the element it
	// selects (element-scoped view transitions); empty: the whole page.
	// It needs ViewTransition.
	ViewTransitionSelector string `json:"viewTransitionSelector,omitempty"`
	// Elements is the HTML to patch. It is sent as written: escape user text.
	Elements string `json:"elements,omitempty"`
	// Signals is a JSON object to merge into the page's signals.
	Signals json.RawMessage `json:"signals,omitempty"`
	// OnlyIfMissing patches only the signals the page does not have yet.
	// See [Effect.IfMissing].
	OnlyIfMissing bool `json:"onlyIfMissing,omitempty"`
	// Script is the JavaScript to run.
	Script string `json:"script,omitempty"`
	// ScriptAttributes are the script element's attributes, each a whole
	// name="value" pair sent as written (escape user text), e.g.
	// `type="module"`. See [Effect.WithAttributes].
	ScriptAttributes []string `json:"scriptAttributes,omitempty"`
	// KeepScript leaves the script element in the page after it ran; by
	// default the client removes it. See [Effect.Kept].
	KeepScript bool `json:"keepScript,omitempty"`
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

// ExecuteScript runs script in the page, sent as a <script> appended to the
// body, which removes itself once it ran (see [Effect.Kept]).
func ExecuteScript(script string) Effect {
	return Effect{Kind: KindExecuteScript, Script: script}
}

// The options of one effect read as methods on it, each returning a copy:
//
//	sfere.PatchElements(`<ul id="list">…</ul>`).WithViewTransition()
//	sfere.AppendElements("#chart", `<circle r="4"/>`).InNamespace(datastar.NamespaceSVG)
//	sfere.ExecuteScript("init()").WithAttributes(`type="module"`).Kept()
//
// An option that does not apply to the effect's kind is an [ErrBadEffect]
// when it is rendered, so a misplaced one cannot pass unnoticed.

// WithViewTransition returns e, a patch or a removal of elements, applied
// inside a view transition of the whole page.
func (e Effect) WithViewTransition() Effect {
	e.ViewTransition = true
	return e
}

// WithScopedViewTransition returns e, a patch or a removal of elements,
// applied inside a view transition of the element selector matches only
// (an element-scoped view transition).
func (e Effect) WithScopedViewTransition(selector string) Effect {
	e.ViewTransition = true
	e.ViewTransitionSelector = selector
	return e
}

// InNamespace returns the patch e with its elements parsed in namespace
// ns: [datastar.NamespaceSVG] for SVG elements (a <circle> patched into an
// <svg>), [datastar.NamespaceMathML] for MathML.
func (e Effect) InNamespace(ns datastar.Namespace) Effect {
	e.Namespace = ns
	return e
}

// WithAttributes returns the script e with attrs added to its element,
// each a whole name="value" pair, e.g. `type="module"`.
func (e Effect) WithAttributes(attrs ...string) Effect {
	e.ScriptAttributes = append(e.ScriptAttributes[:len(e.ScriptAttributes):len(e.ScriptAttributes)], attrs...)
	return e
}

// IfMissing returns the signal patch e applied only to the signals the
// page does not have yet.
func (e Effect) IfMissing() Effect {
	e.OnlyIfMissing = true
	return e
}

// Kept returns the script e with its element left in the page after it
// ran (by default the client removes it).
func (e Effect) Kept() Effect {
	e.KeepScript = true
	return e
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
	packed     *packed  // data as a group compressed it, for compressed streams (compress_group.go); nil: none

	// rendered is when render made it: where its deliveries' latency
	// starts (latency.go). Zero for the hub's own messages.
	rendered time.Time
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
	m.rendered = time.Now()
	return m, nil
}

// retryField is an SSE block that sets the client's reconnection delay.
func retryField(d time.Duration) []byte {
	return fmt.Appendf(nil, "retry: %d\n\n", d.Milliseconds())
}

func renderOne(sse *datastar.ServerSentEventGenerator, buf *renderBuffer, e Effect, m *message) error {
	if err := checkOptions(e); err != nil {
		return err
	}
	switch e.Kind {
	case KindPatchElements:
		opts, err := patchOptions(e)
		if err != nil {
			return err
		}
		return sse.PatchElements(oneLineBreak(e.Elements), opts...)
	case KindRemoveElements:
		if e.Selector == "" {
			return errors.New("remove needs a selector")
		}
		opts, err := patchOptions(e)
		if err != nil {
			return err
		}
		return sse.RemoveElement(e.Selector, opts...)
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
		var opts []datastar.ExecuteScriptOption
		if len(e.ScriptAttributes) > 0 {
			attrs := make([]string, len(e.ScriptAttributes))
			for i, a := range e.ScriptAttributes {
				attrs[i] = oneLineBreak(a)
			}
			opts = append(opts, datastar.WithExecuteScriptAttributes(attrs...))
		}
		if e.KeepScript {
			opts = append(opts, datastar.WithExecuteScriptAutoRemove(false))
		}
		return sse.ExecuteScript(oneLineBreak(e.Script), opts...)
	case KindComment:
		_, err := fmt.Fprintf(buf, ": %s\n\n", strings.ReplaceAll(oneLineBreak(e.Text), "\n", "\n: "))
		return err
	case KindCloseStream:
		m.close = true
		return nil
	}
	return fmt.Errorf("unknown kind %q", e.Kind)
}

// checkOptions rejects what could forge SSE lines (a line break in a
// selector) and options that do not apply to e's kind.
func checkOptions(e Effect) error {
	if strings.ContainsAny(e.Selector, "\r\n") || strings.ContainsAny(e.ViewTransitionSelector, "\r\n") {
		return errors.New("line break in selector")
	}
	elements := e.Kind == KindPatchElements || e.Kind == KindRemoveElements
	switch {
	case (e.ViewTransition || e.ViewTransitionSelector != "") && !elements:
		return errors.New("a view transition needs a patch or removal of elements")
	case e.ViewTransitionSelector != "" && !e.ViewTransition:
		return errors.New("a view transition selector without a view transition")
	case e.Namespace != "" && e.Kind != KindPatchElements:
		return errors.New("a namespace needs a patch of elements")
	case (len(e.ScriptAttributes) > 0 || e.KeepScript) && e.Kind != KindExecuteScript:
		return errors.New("script options need a script")
	case e.OnlyIfMissing && e.Kind != KindPatchSignals:
		return errors.New("only-if-missing needs a patch of signals")
	}
	return nil
}

// patchOptions are the datastar options of e, a patch or removal of
// elements.
func patchOptions(e Effect) ([]datastar.PatchElementOption, error) {
	opts := make([]datastar.PatchElementOption, 0, 5)
	if e.Selector != "" && e.Kind == KindPatchElements {
		opts = append(opts, datastar.WithSelector(e.Selector))
	}
	if e.Mode != "" && e.Kind == KindPatchElements {
		mode, err := datastar.ElementPatchModeFromString(string(e.Mode))
		if err != nil {
			return nil, err
		}
		opts = append(opts, datastar.WithMode(mode))
	}
	if e.Namespace != "" {
		ns, err := datastar.NamespaceFromString(string(e.Namespace))
		if err != nil {
			return nil, err
		}
		opts = append(opts, datastar.WithNamespace(ns))
	}
	if e.ViewTransition {
		opts = append(opts, datastar.WithUseViewTransitions(true))
		if e.ViewTransitionSelector != "" {
			opts = append(opts, datastar.WithViewTransitionSelector(e.ViewTransitionSelector))
		}
	}
	return opts, nil
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
