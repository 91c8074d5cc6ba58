package lobby

import (
	"testing"
)

// ChatLines renders what the lobby broadcasts for a chat line, escaped.
func TestChatLinesRenderTheLobbysLine(t *testing.T) {
	c, err := NewChatLines()
	if err != nil {
		t.Fatal(err)
	}
	v, err := newViews("", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Line("phil", `it's <b>bold</b> & "quoted"`)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := v.chatLine("phil", `it's <b>bold</b> & "quoted"`)
	if got != want || got != `<p class="chat-message"><strong>phil</strong>: it&#39;s &lt;b&gt;bold&lt;/b&gt; &amp; &#34;quoted&#34;</p>` {
		t.Fatalf("got %q, the lobby renders %q", got, want)
	}
}

// HubHistory is the history a lobby gives its hub: the defaults, the
// position signal unless the heartbeat is hidden, none when turned off.
func TestHubHistory(t *testing.T) {
	h := HubHistory(Options{})
	d := DefaultOptions
	if h.Size != d.History || h.MaxAge != d.HistoryAge || h.MaxBytes != d.HistoryBytes || h.PositionSignal != positionSignal {
		t.Errorf("default: %+v", h)
	}
	if h := HubHistory(Options{HiddenHeartbeat: true}); h.PositionSignal != "" || h.Size != d.History {
		t.Errorf("hidden heartbeat: %+v", h)
	}
	if h := HubHistory(Options{History: -1}); h.Size != 0 || h.PositionSignal != "" {
		t.Errorf("no history: %+v", h)
	}
}
