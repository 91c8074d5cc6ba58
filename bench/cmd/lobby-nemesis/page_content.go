package main

import (
	"encoding/hex"
	"encoding/json"
	"html"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sfere-go/sfere/bench/internal/history"
)

// content is what a Datastar event of the lobby did to the page, as the
// checker needs it: chat lines and announcements appended to #messages,
// the participant list replaced, appended to or shortened, the notice
// that lines were lost, the join form, and a reconnect element (which
// opens the stream again, from the position in its URL).
type content struct {
	chat      []history.Chat
	ann       []history.Announce
	list      []string
	isList    bool
	add       []string
	remove    []string
	notice    bool
	joinForm  bool
	reconnect string // the URL of a reconnect element's @post
	lobbyInit string // the URL of the lobby's data-init @post (a /join or page answer)
	// The watchdog page (a visible heartbeat): the position signal it
	// keeps, and the reconnect element that wakes the watchdog at once.
	pos    string
	hasPos bool
	wake   bool
}

// empty reports whether the event did nothing the history keeps.
func (c content) empty() bool {
	return len(c.chat) == 0 && len(c.ann) == 0 && !c.isList && len(c.add) == 0 && len(c.remove) == 0 &&
		!c.notice && !c.joinForm && c.reconnect == "" && c.lobbyInit == "" && !c.wake
}

// The lobby's texts (internal/lobby: templates and lobby.go).
const (
	noticeText = "Some lines said while you were away could not be recovered."
	joinedText = " joined the lobby"
	leftText   = " left the lobby"
	backText   = " is back"
)

var (
	chatRE      = regexp.MustCompile(`<p class="chat-message"><strong>([^<]*)</strong>: ([^<]*)</p>`)
	systemRE    = regexp.MustCompile(`<p class="system-message">([^<]*)</p>`)
	itemRE      = regexp.MustCompile(`<li id="participant-[0-9a-f]*">([^<]*)</li>`)
	reconnectRE = regexp.MustCompile(`data-init__delay\.2s="@post\('([^']*)'\)"`)
	lobbyInitRE = regexp.MustCompile(`<section id="lobby" data-init="@post\('([^']*)'\)"`)
	removeRE    = regexp.MustCompile(`^#participant-([0-9a-f]+)$`)
	wakeRE      = regexp.MustCompile(`data-init__delay\.2s="\$_streamSeen = 0"`)

	// The watchdog (internal/lobby/templates/watchdog.html).
	watchdogPosRE     = regexp.MustCompile(`data-signals="\{_streamPos: '([^']*)'`)
	watchdogInitRE    = regexp.MustCompile(`data-init="\$_streamSeen = Date\.now\(\); @post\('([^']*)'\)"`)
	watchdogSilenceRE = regexp.MustCompile(`Date\.now\(\) - \$_streamSeen &gt;\s*(\d+)\s*&amp;&amp;`)
	watchdogRetryRE   = regexp.MustCompile(`\+\s*(\d+)\s*\* \(0\.5`)
)

// positionSignal is the watchdog page's position signal.
const positionSignal = "_streamPos"

// parseContent reads a Datastar event of the lobby.
func parseContent(ev sseEvent) content {
	var c content
	if ev.typ == "datastar-patch-signals" {
		for _, d := range ev.data {
			if v, ok := strings.CutPrefix(d, "signals "); ok {
				var sig map[string]any
				if json.Unmarshal([]byte(v), &sig) == nil {
					if pos, ok := sig[positionSignal].(string); ok {
						c.pos, c.hasPos = pos, true
					}
				}
			}
		}
		return c
	}
	if ev.typ != "datastar-patch-elements" {
		return c
	}
	var selector, mode string
	var elems []string
	for _, d := range ev.data {
		k, v, _ := strings.Cut(d, " ")
		switch k {
		case "selector":
			selector = v
		case "mode":
			mode = v
		case "elements":
			elems = append(elems, v)
		}
	}
	el := strings.Join(elems, "\n")
	switch {
	case mode == "remove":
		if m := removeRE.FindStringSubmatch(selector); m != nil {
			if name, err := hex.DecodeString(m[1]); err == nil {
				c.remove = append(c.remove, string(name))
			}
		}
	case selector == "#messages":
		for _, m := range chatRE.FindAllStringSubmatch(el, -1) {
			c.chat = append(c.chat, history.Chat{Speaker: html.UnescapeString(m[1]), Text: html.UnescapeString(m[2])})
		}
		for _, m := range systemRE.FindAllStringSubmatch(el, -1) {
			text := html.UnescapeString(m[1])
			switch {
			case text == noticeText:
				c.notice = true
			case strings.HasSuffix(text, joinedText):
				c.ann = append(c.ann, history.Announce{Name: strings.TrimSuffix(text, joinedText), What: history.Joined})
			case strings.HasSuffix(text, leftText):
				c.ann = append(c.ann, history.Announce{Name: strings.TrimSuffix(text, leftText), What: history.Left})
			case strings.HasSuffix(text, backText):
				c.ann = append(c.ann, history.Announce{Name: strings.TrimSuffix(text, backText), What: history.Back})
			}
		}
	case selector == "#participant-list":
		for _, m := range itemRE.FindAllStringSubmatch(el, -1) {
			c.add = append(c.add, html.UnescapeString(m[1]))
		}
	case selector == "#lobby":
		if m := reconnectRE.FindStringSubmatch(el); m != nil {
			c.reconnect = html.UnescapeString(m[1])
		}
		c.wake = wakeRE.MatchString(el)
	case selector == "" && strings.HasPrefix(el, `<ul id="participant-list">`):
		c.isList = true
		for _, m := range itemRE.FindAllStringSubmatch(el, -1) {
			c.list = append(c.list, html.UnescapeString(m[1]))
		}
		if c.list == nil {
			c.list = []string{}
		}
	case selector == "" && strings.HasPrefix(el, `<div id="app">`):
		if strings.Contains(el, `<section id="lobby"`) {
			c.lobbyInit = "lobby" // the lobby app: see [lobbyPage]
		} else if strings.Contains(el, `<form id="join"`) {
			c.joinForm = true
		}
	}
	return c
}

// lobbyPage is how a page of the lobby opens its stream: its data-init
// URL, and for a page with the watchdog (a visible heartbeat) the
// watchdog's timing and the position it starts from.
type lobbyPage struct {
	url      string
	watchdog bool
	pos      string
	silence  time.Duration // no event this long: the stream is dead
	retry    time.Duration // then reopened every retry·(0.5-1)
}

// lobbyInit finds how the lobby in an answer (the SSE of /join, or a
// page's HTML) opens its stream; ok is false if the answer holds no lobby.
func lobbyInit(body string) (lp lobbyPage, ok bool) {
	if m := watchdogInitRE.FindStringSubmatch(body); m != nil {
		lp = lobbyPage{url: html.UnescapeString(m[1]), watchdog: true}
		if m := watchdogPosRE.FindStringSubmatch(body); m != nil {
			lp.pos = html.UnescapeString(m[1])
		}
		lp.silence, lp.retry = 4400*time.Millisecond, 2*time.Second
		if m := watchdogSilenceRE.FindStringSubmatch(body); m != nil {
			ms, _ := strconv.Atoi(m[1])
			lp.silence = time.Duration(ms) * time.Millisecond
		}
		if m := watchdogRetryRE.FindStringSubmatch(body); m != nil {
			ms, _ := strconv.Atoi(m[1])
			lp.retry = time.Duration(ms) * time.Millisecond
		}
		return lp, true
	}
	if m := lobbyInitRE.FindStringSubmatch(body); m != nil {
		return lobbyPage{url: html.UnescapeString(m[1])}, true
	}
	return lobbyPage{}, false
}

// listItems returns the names of the participant list in a page's HTML.
func listItems(body string) []string {
	start := strings.Index(body, `<ul id="participant-list">`)
	if start < 0 {
		return nil
	}
	end := strings.Index(body[start:], `</ul>`)
	if end < 0 {
		return nil
	}
	var names []string
	for _, m := range itemRE.FindAllStringSubmatch(body[start:start+end], -1) {
		names = append(names, html.UnescapeString(m[1]))
	}
	return names
}
