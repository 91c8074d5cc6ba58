package presence

import (
	"cmp"
	"slices"
	"time"
)

// AwayMember is a person who departed resumably ([Departure.Resumable])
// and may still come back: its departure was announced, its id stays
// reserved for its owner, and a stream of the owner's within the resume
// window ([Options.Resume]) brings it back.
type AwayMember struct {
	// ID and Meta are the person's, as claimed.
	ID, Meta string
	// Until is when its resume window runs out, as this node's tracker
	// counts it: a person a cluster's other node reported away got its
	// window here from when this node learnt of it.
	Until time.Time
}

// Away returns the people away within their resume window, the window
// that runs out first first. It is empty without [Options.Resume].
func (t *Tracker) Away() []AwayMember {
	t.mu.Lock()
	defer t.unlock()
	var away []AwayMember
	for _, p := range t.people {
		if p.state == stAway {
			away = append(away, AwayMember{ID: p.id, Meta: p.meta, Until: p.until})
		}
	}
	slices.SortFunc(away, func(a, b AwayMember) int {
		return cmp.Or(a.Until.Compare(b.Until), cmp.Compare(a.ID, b.ID))
	})
	return away
}
