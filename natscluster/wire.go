package natscluster

import (
	"errors"
	"fmt"

	"github.com/sfere-go/sfere"
)

// Subjects under the prefix.
const (
	subjectPresence  = ".presence"
	subjectBroadcast = ".broadcast"
	subjectSend      = ".send."
)

// stamp orders the opens of one key across nodes: the later open wins.
type stamp struct {
	At   int64  `json:"at"` // UnixNano at open
	Node string `json:"node"`
}

func (a stamp) after(b stamp) bool {
	if a.At != b.At {
		return a.At > b.At
	}
	return a.Node > b.Node
}

// Presence operations.
const (
	opOpen     = "open"
	opClose    = "close"
	opSnapshot = "snapshot"
	opBye      = "bye"
)

type presenceKey struct {
	Key   sfere.Key `json:"key"`
	Stamp stamp     `json:"stamp"`
}

// presence is one message on the presence subject.
type presence struct {
	Node  string        `json:"node"`
	Op    string        `json:"op"`
	Seq   uint64        `json:"seq,omitempty"`   // snapshot number
	Part  int           `json:"part,omitempty"`  // snapshot chunk, from 0
	Parts int           `json:"parts,omitempty"` // snapshot chunks in all
	Keys  []presenceKey `json:"keys,omitempty"`
}

// broadcast is one message on the broadcast subject.
type broadcast struct {
	Node    string         `json:"node"`
	Pattern sfere.Pattern  `json:"pattern"`
	Exclude *wireMatcher   `json:"exclude,omitempty"`
	Effects []sfere.Effect `json:"effects"`
}

// wireMatcher carries the exclusions a broadcast can travel with.
type wireMatcher struct {
	Keys    []sfere.Key    `json:"keys,omitempty"`
	Pattern *sfere.Pattern `json:"pattern,omitempty"`
}

// ErrUnsupportedMatcher is returned by [Node.Broadcast] for an exclusion
// that cannot travel between nodes: only [sfere.Key], [sfere.KeySet] and
// [sfere.Pattern] can.
var ErrUnsupportedMatcher = errors.New("natscluster: exclusion cannot be sent to other nodes")

func encodeMatcher(m sfere.Matcher) (*wireMatcher, error) {
	switch m := m.(type) {
	case nil:
		return nil, nil
	case sfere.Key:
		return &wireMatcher{Keys: []sfere.Key{m}}, nil
	case sfere.KeySet:
		w := &wireMatcher{Keys: make([]sfere.Key, 0, len(m))}
		for k := range m {
			w.Keys = append(w.Keys, k)
		}
		return w, nil
	case sfere.Pattern:
		return &wireMatcher{Pattern: &m}, nil
	}
	return nil, fmt.Errorf("%w: %T", ErrUnsupportedMatcher, m)
}

func (w *wireMatcher) matcher() sfere.Matcher {
	switch {
	case w == nil:
		return nil
	case w.Pattern != nil:
		return *w.Pattern
	}
	return sfere.Keys(w.Keys...)
}

type sendRequest struct {
	Effects []sfere.Effect `json:"effects"`
}

type sendReply struct {
	Delivered int    `json:"delivered"`
	Failed    int    `json:"failed"`
	NoStream  bool   `json:"noStream,omitempty"`
	Error     string `json:"error,omitempty"`
}
