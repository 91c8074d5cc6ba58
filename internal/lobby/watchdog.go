package lobby

import (
	"net/url"
	"time"
)

// The signals of the page's watchdog. They start with an underscore, so
// the page never sends them back with its requests.
const (
	// beatSignal is the visible heartbeat's signal: the time of the beat.
	beatSignal = "_streamBeat"
	// positionSignal is the page's position: the hub sets it after every
	// event it keeps, at every stream's opening and with every beat.
	positionSignal = "_streamPos"
)

// Timing of the watchdog.
const (
	// silenceBeats is how many heartbeat intervals without any event make
	// the page take its stream for dead. A live stream gets a beat or
	// app traffic at least every 1.5 intervals (see sfere.Heartbeat), and
	// the check runs every watchdogTick: the notice shows at most
	// 2.2 intervals + watchdogTick after the network went silent, under
	// the 2.5 intervals the page promises.
	silenceBeats = 2.2
	// minSilence keeps a short heartbeat (tests run 300 ms) from taking a
	// busy machine's pause for a dead stream.
	minSilence = 2 * time.Second
	// watchdogTick is how often the page checks for silence (written in
	// the "watchdog" template, data-on-interval__duration.250ms).
	watchdogTick = 250 * time.Millisecond
	// maxRetry bounds the wait between two reopenings while the stream
	// stays dead. A reopening whose connection attempt is lost waits for
	// TCP's own retransmission (1, 3, 7 s...), so the page starts a fresh
	// one every one to two seconds: the stream is back within about that
	// long once the network is.
	maxRetry = 2 * time.Second
)

// watchdog is the page's watchdog for one lobby: it opens the page's
// stream, notices when no event has arrived for too long, shows
// "reconnecting…" and reopens the stream from the page's position, until
// events flow again.
type watchdog struct {
	silence, retry time.Duration
}

// newWatchdog returns the watchdog for a visible heartbeat every interval.
func newWatchdog(interval time.Duration) *watchdog {
	return &watchdog{
		silence: max(time.Duration(silenceBeats*float64(interval)), minSilence),
		retry:   min(interval, maxRetry),
	}
}

// watchdogData is what the "watchdog" template renders.
type watchdogData struct {
	// StreamURL opens the stream from the position the page was rendered
	// at. Every reopening uses the same URL, so that Datastar aborts the
	// request it replaces (it cancels by method and URL: see
	// TestBrowserDatastarCancelsTheSameURL), and passes the page's
	// position in a Last-Event-ID header, which the hub prefers to the
	// URL's.
	StreamURL          string
	Position           string
	SilenceMS, RetryMS int64
}

// data returns the template data of the watchdog of a page rendered at
// pos; nil for a lobby without a watchdog.
func (w *watchdog) data(pos string) *watchdogData {
	if w == nil {
		return nil
	}
	return &watchdogData{
		StreamURL: streamURL(pos),
		Position:  pos,
		SilenceMS: w.silence.Milliseconds(),
		RetryMS:   w.retry.Milliseconds(),
	}
}

// streamURL is the URL that opens a page's stream from pos.
func streamURL(pos string) string {
	if pos == "" {
		return "/sse"
	}
	return "/sse?lastEventID=" + url.QueryEscape(pos)
}
