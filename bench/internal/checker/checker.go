// Package checker reads the history of a fault campaign (package history)
// and reports, per promise of the lobby, whether it held:
//
//   - every line answered 2xx reaches every page that was present from
//     before it was said until after, exactly once, in its speaker's order,
//     or that page is told it could not be recovered;
//   - every arrival, departure and return is announced at most once to
//     each page, and once the faults stop every page's participant list is
//     who is really there;
//   - no name is held by two sessions at any moment;
//   - the server processes come back to their resources.
//
// "Present from before it was said until after" is defined on what the
// clients recorded: a page is owed a line when its life began (its first
// stream was answered 200) before the line's request was sent, and it did
// not end (closed, reloaded, left, told to join again, broken by an error
// answer) before the line's answer plus [Options.Settle], nor before the
// end of a fault under way then plus Settle on its own person's packets,
// or on the lobby node its stream was on that keeps the node from
// delivering (cut off from NATS, paused: it delivers once it is back, and
// neither it nor the page can learn sooner that the page should go
// elsewhere; with one lobby node, any such fault of it: a broken page has
// nowhere else to go), each fault that begins before the page had Settle
// free of the earlier ones pushing that time to its end,
// and it had a stream open until Settle after the answer or opened one
// after the answer (a page whose stream broke before the line could reach
// it and that ended while the stream was being retried never had the
// chance). A page that is
// owed a line and never shows it has lost it silently, unless the page
// was told, after the line was sent, that lines could not be recovered,
// or was told to join again: then it is a declared loss.
package checker

import (
	"time"

	"github.com/sfere-go/sfere/bench/internal/history"
)

// Options tune the checker.
type Options struct {
	// Settle is how long after a line's answer (or an arrival, or a
	// departure) a page must still live for the line or announcement to
	// be owed to it: the time delivery may take. Zero means 2 s.
	Settle time.Duration
	// Findings is how many examples of each kind of violation the report
	// keeps. Zero means 5.
	Findings int
}

// DefaultSettle is the Settle of zero Options.
const DefaultSettle = 2 * time.Second

// Report is what the checker found. Its counts are per page: a line owed
// to five pages is five expected deliveries.
type Report struct {
	Seed int64

	Lines         Lines
	Announcements Announcements
	// NamesHeldTwice counts /join answers that gave a name to a session
	// while another session held it (its page kept receiving the lobby's
	// events after the answer).
	NamesHeldTwice int
	Lists          Lists
	Pages          Pages
	Procs          []Proc
	// Faults counts the faults that started, by kind.
	Faults map[string]int
	// LostDuring counts the silent losses by the kinds of fault under way
	// between the line's request and its answer plus Settle ("none" when
	// no fault was): a loss during two faults counts for both.
	LostDuring map[string]int

	// Findings are examples of each violation, a few per kind, for a
	// person to look up in the history.
	Findings []string
}

// Lines are the counts of the first promise.
type Lines struct {
	Said          int // /message requests sent
	Accepted      int // answered 2xx
	Expected      int // (line, page) pairs owed
	DeliveredOnce int
	LostSilently  int
	DeclaredLost  int
	Doubled       int // (accepted line, page) pairs received more than once, owed or not
	OutOfOrder    int // accepted lines received after a later accepted line of the same speaker
}

// Announcements are the counts of the second promise's announcements.
type Announcements struct {
	Received int
	// Doubled counts an arrival or return announced to a page that was
	// already told the person is here, or a departure announced to a page
	// already told the person left, with no list between.
	Doubled int
	// Expected counts (arrival or departure, page) pairs owed: a person's
	// first page after a fresh join, or a /leave, while the page lived
	// from before it until Settle after.
	Expected int
	// Missing counts the owed ones that never showed: no announcement,
	// list or list item saying it.
	Missing int
}

// Lists are the counts of the final participant lists.
type Lists struct {
	Pages int // pages that reported a final list
	Wrong int // lists that disagree with who is really there
	// Truth is who is really there, as the campaign recorded it.
	Truth []string
}

// Pages counts page lives by how they ended.
type Pages struct {
	Opened        int
	Streams       int // stream attempts
	StreamsOK     int // answered 200
	BrokenByError int // ended by an error answer to a stream
	Told          int // ended by the join form
}

// Proc compares a server process at the end with its baseline.
type Proc struct {
	Target                         string
	PID                            int
	BaseRSS, FinalRSS              int64
	BaseGoroutines, FinalGoroutine int
	// NotBack: its goroutines or resident memory did not come back near
	// the baseline (see [procBack]).
	NotBack bool
	// Restarted: the final sample is of a process started during the
	// campaign, which has no baseline to compare.
	Restarted bool
}

// Failed reports whether the report breaks a promise that must hold: any
// line lost silently, doubled or out of order, any announcement doubled, or
// any name held twice.
func (r Report) Failed() bool {
	return r.Lines.LostSilently > 0 || r.Lines.Doubled > 0 || r.Lines.OutOfOrder > 0 ||
		r.Announcements.Doubled > 0 || r.NamesHeldTwice > 0
}

// defaultFindings is the examples kept per kind by default.
const defaultFindings = 5

// Check reads a history and returns the report.
func Check(recs []history.Record, opts Options) Report {
	if opts.Settle <= 0 {
		opts.Settle = DefaultSettle
	}
	if opts.Findings <= 0 {
		opts.Findings = defaultFindings
	}
	c := newCheck(recs, opts)
	c.checkLines()
	c.checkAnnouncements()
	c.heldTwice()
	c.finalLists()
	c.procs()
	return c.r
}
