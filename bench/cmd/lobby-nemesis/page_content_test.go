package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/bench/internal/history"
)

// A stream as the lobby writes it (captured from cmd/lobby, shortened).
const lobbyStream = `retry: 677

event: datastar-patch-elements
data: elements <ul id="participant-list"><li id="participant-616e6e">ann</li><li id="participant-626f62">bob</li></ul>

: heartbeat

event: datastar-patch-elements
data: selector #messages
data: mode append
data: elements <p class="system-message">ann joined the lobby</p><p class="system-message">cy left the lobby</p>
id: e1-2

event: datastar-patch-elements
data: selector #messages
data: mode append
data: elements <p class="chat-message"><strong>ann</strong>: ann-7</p>
id: e1-3

event: datastar-patch-elements
data: selector #participant-626f62
data: mode remove
id: e1-4

event: datastar-patch-elements
data: selector #participant-list
data: mode append
data: elements <li id="participant-6479">dy</li>

event: datastar-patch-elements
data: selector #messages
data: mode append
data: elements <p class="system-message">Some lines said while you were away could not be recovered.</p><p class="system-message">dy is back</p>

event: datastar-patch-elements
data: selector #lobby
data: mode append
data: elements <div id="reconnect-x" hidden data-init__delay.2s="@post('/sse?lastEventID=e1-9')"></div>

event: datastar-patch-elements
data: elements <div id="app">
data: elements   <p class="notice" id="join-notice">Please join again.</p>
data: elements   <form id="join" data-signals:username__ifmissing="''">
data: elements </div>

event: datastar-patch-elements
data: elements <div id="app">
data: elements   <section id="lobby" data-init="@post('/sse?lastEventID=e2-0')" data-signals="{message: ''}">
data: elements </div>

event: datastar-patch-elements
data: selector #messages
data: mode append
data: elements <p class="chat-message"><strong>ann</strong>: ann-8</p>
`

func TestParseLobbyStream(t *testing.T) {
	var got []content
	var ids []string
	var retry time.Duration
	err := readSSE(strings.NewReader(lobbyStream), func(ev sseEvent) error {
		if ev.retry > 0 {
			retry = ev.retry
		}
		if ev.hasID {
			ids = append(ids, ev.id)
		}
		got = append(got, parseContent(ev))
		return nil
	})
	if err == nil || err.Error() != "EOF" {
		t.Fatalf("readSSE = %v, want EOF", err)
	}
	// The last event has no blank line after it: a broken end, dropped.
	if len(got) != 10 {
		t.Fatalf("%d events, want 10 (the retry, nine patches; the unfinished last one dropped)", len(got))
	}
	if retry != 677*time.Millisecond || !slices.Equal(ids, []string{"e1-2", "e1-3", "e1-4"}) {
		t.Errorf("retry %v, ids %v", retry, ids)
	}
	if !got[0].empty() {
		t.Errorf("the retry event did something: %+v", got[0])
	}
	if !got[1].isList || !slices.Equal(got[1].list, []string{"ann", "bob"}) {
		t.Errorf("list: %+v", got[1])
	}
	if want := []history.Announce{{Name: "ann", What: history.Joined}, {Name: "cy", What: history.Left}}; !slices.Equal(got[2].ann, want) {
		t.Errorf("announcements: %+v", got[2].ann)
	}
	if want := []history.Chat{{Speaker: "ann", Text: "ann-7"}}; !slices.Equal(got[3].chat, want) {
		t.Errorf("chat: %+v", got[3].chat)
	}
	if !slices.Equal(got[4].remove, []string{"bob"}) || !slices.Equal(got[5].add, []string{"dy"}) {
		t.Errorf("remove %v, add %v", got[4].remove, got[5].add)
	}
	if !got[6].notice || !slices.Equal(got[6].ann, []history.Announce{{Name: "dy", What: history.Back}}) {
		t.Errorf("notice and return: %+v", got[6])
	}
	if got[7].reconnect != "/sse?lastEventID=e1-9" {
		t.Errorf("reconnect = %q", got[7].reconnect)
	}
	if !got[8].joinForm || got[9].lobbyInit == "" || got[9].joinForm {
		t.Errorf("join form %+v, lobby %+v", got[8], got[9])
	}
}

// The lobby with the watchdog (a visible heartbeat), as /join answers it
// (captured from cmd/lobby, shortened).
const watchdogLobby = `event: datastar-patch-elements
data: elements <div id="app">
data: elements   <section id="lobby" data-signals="{message: '', _messageError: ''}">
data: elements <div id="stream-watchdog"
data: elements      data-signals="{_streamPos: 'f13d-0', _streamBeat: 0, _streamSeen: Date.now(), _streamLost: false}"
data: elements      data-init="$_streamSeen = Date.now(); @post('/sse?lastEventID=f13d-0')"
data: elements      data-on-interval__duration.250ms="Date.now() - $_streamSeen &gt;  4400  &amp;&amp; ($_streamLost = true, $_streamSeen = Date.now() -  4400  +  2000  * (0.5 + Math.random() / 2), @post(&#34;/sse?lastEventID=f13d-0&#34;, {headers: $_streamPos ? {'Last-Event-ID': $_streamPos} : {}}))">
data: elements </div>
data: elements </div>

event: datastar-patch-signals
data: signals {"_streamPos":"f13d-7"}
id: f13d-7

event: datastar-patch-elements
data: selector #lobby
data: mode append
data: elements <div id="reconnect-dnagiqecmqpu" hidden data-init__delay.2s="$_streamSeen = 0"></div>

`

func TestParseWatchdogLobby(t *testing.T) {
	lp, ok := lobbyInit(watchdogLobby)
	want := lobbyPage{url: "/sse?lastEventID=f13d-0", watchdog: true, pos: "f13d-0", silence: 4400 * time.Millisecond, retry: 2 * time.Second}
	if !ok || lp != want {
		t.Errorf("lobbyInit = %+v, %v; want %+v", lp, ok, want)
	}
	var got []content
	_ = readSSE(strings.NewReader(watchdogLobby), func(ev sseEvent) error {
		got = append(got, parseContent(ev))
		return nil
	})
	if len(got) != 3 || got[0].lobbyInit == "" || !got[1].hasPos || got[1].pos != "f13d-7" || !got[2].wake {
		t.Errorf("events: %+v", got)
	}
	// The lobby without the watchdog opens its stream from its section.
	lp, ok = lobbyInit(`<section id="lobby" data-init="@post('/sse?lastEventID=e2-0')" data-signals="{}">`)
	if !ok || lp != (lobbyPage{url: "/sse?lastEventID=e2-0"}) {
		t.Errorf("lobbyInit without the watchdog = %+v, %v", lp, ok)
	}
	if _, ok := lobbyInit(`<div id="app"><form id="join"></form></div>`); ok {
		t.Error("the join form taken for a lobby")
	}
}
