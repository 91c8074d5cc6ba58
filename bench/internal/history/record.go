// Package history is the record a fault campaign keeps: what every client
// asked and was answered, every event each page received, and what the
// nemesis did, as one JSON object a line. Writers append records as they
// happen; the checker (package checker) reads the whole file afterwards.
package history

import "time"

// Kind says what a record is.
type Kind string

// The kinds of record.
const (
	// KindMeta opens a history: the campaign's seed, mode and settings.
	KindMeta Kind = "meta"
	// KindSchedule is one fault the nemesis planned (Fault, Target,
	// Offset from the start, Length).
	KindSchedule Kind = "schedule"
	// KindFault is a fault's start or end as it happened (Fault, Target,
	// Phase).
	KindFault Kind = "fault"
	// KindRequest is a short request and its answer: /join (Name),
	// /message (Text, Seq), /leave, GET /. Sent is when it was sent, At
	// when the answer (or the error, Err) came; Status is 0 without an
	// answer.
	KindRequest Kind = "request"
	// KindStream is one attempt to open a page's stream: Sent, At (the
	// answer's head or the error), Status, LastEventID (the header sent on
	// a retry) and Query (the lastEventID query parameter).
	KindStream Kind = "stream"
	// KindStreamEnd is the end of a stream that was answered 200: Err is
	// "" for a clean end by the server.
	KindStreamEnd Kind = "stream-end"
	// KindPageOpen starts a page's life: its first stream was answered
	// 200. Lines said after it are owed to the page until it ends.
	KindPageOpen Kind = "page-open"
	// KindPageEnd ends a page's life (Reason): closed or reloaded by its
	// person, left, told to join again, or broken by an error answer.
	KindPageEnd Kind = "page-end"
	// KindEvent is one event a page received, with what it said.
	KindEvent Kind = "event"
	// KindFinal is a page's participant list once the faults stopped and
	// the quiet period passed (Names).
	KindFinal Kind = "final"
	// KindTruth is who is really in the lobby at the end (Names): the
	// people who joined, did not leave, and hold an open page.
	KindTruth Kind = "truth"
	// KindNode names a lobby node (Target) and the address it serves on
	// (Node), as the load balancer reports it in the streams' records:
	// what ties a fault on a node to the pages it served.
	KindNode Kind = "node"
	// KindProc is a sample of a server process (Target, PID, Phase
	// "baseline" or "final", RSS, Goroutines).
	KindProc Kind = "proc"
)

// The reasons a page ends.
const (
	EndClosed = "closed"  // its person closed the tab
	EndReload = "reload"  // its person reloaded it (a new page follows)
	EndLeft   = "left"    // its person left the lobby
	EndTold   = "told"    // the lobby sent the join form: it no longer knows the session
	EndError  = "error"   // a stream was answered with an error status, which the client does not retry
	EndGaveUp = "gave-up" // its stream failed the client's every retry
)

// The phases of a fault and of a process sample.
const (
	PhaseStart    = "start"
	PhaseEnd      = "end"
	PhaseBaseline = "baseline"
	PhaseFinal    = "final"
)

// The kinds of announcement.
const (
	Joined = "joined"
	Left   = "left"
	Back   = "back"
)

// Record is one line of a history. Which fields are set depends on Kind.
type Record struct {
	Kind Kind      `json:"kind"`
	At   time.Time `json:"at"`

	// Client is the person (its name in the lobby); Page numbers the
	// person's pages, from 1, never reused.
	Client string `json:"client,omitempty"`
	Page   int    `json:"page,omitempty"`

	// Requests and streams.
	Route       string    `json:"route,omitempty"`
	Sent        time.Time `json:"sent,omitzero"`
	Status      int       `json:"status,omitempty"`
	Err         string    `json:"err,omitempty"`
	Name        string    `json:"name,omitempty"` // the name a /join asked for
	Text        string    `json:"text,omitempty"` // a /message's line
	Seq         int       `json:"seq,omitempty"`  // the line's number in its speaker's order, from 1
	LastEventID string    `json:"lastEventID,omitempty"`
	Query       string    `json:"query,omitempty"`
	Node        string    `json:"node,omitempty"` // the lobby node that answered, if known
	Reason      string    `json:"reason,omitempty"`

	// Events.
	ID     string     `json:"id,omitempty"`
	Chat   []Chat     `json:"chat,omitempty"`
	Ann    []Announce `json:"ann,omitempty"`
	List   []string   `json:"list,omitempty"` // a whole participant list, if IsList
	IsList bool       `json:"isList,omitempty"`
	Add    []string   `json:"add,omitempty"`    // names appended to the list
	Remove []string   `json:"remove,omitempty"` // names removed from the list
	// Notice: the page was told lines could not be recovered.
	Notice bool `json:"notice,omitempty"`
	// JoinForm: the lobby put the join form back (the page is out).
	JoinForm bool `json:"joinForm,omitempty"`

	// Final lists and the truth.
	Names []string `json:"names,omitempty"`

	// Faults and schedules.
	Fault  string        `json:"fault,omitempty"`
	Target string        `json:"target,omitempty"`
	Phase  string        `json:"phase,omitempty"`
	Offset time.Duration `json:"offset,omitempty"`
	Length time.Duration `json:"length,omitempty"`

	// Process samples.
	PID        int   `json:"pid,omitempty"`
	RSS        int64 `json:"rss,omitempty"`
	Goroutines int   `json:"goroutines,omitempty"`

	// Meta.
	Seed     int64             `json:"seed,omitempty"`
	Settings map[string]string `json:"settings,omitempty"`
}

// Chat is a chat line as a page received it.
type Chat struct {
	Speaker string `json:"speaker"`
	Text    string `json:"text"`
}

// Announce is an arrival, departure or return line: Name and What
// ([Joined], [Left] or [Back]).
type Announce struct {
	Name string `json:"name"`
	What string `json:"what"`
}
