package presence

import (
	"fmt"
	"testing"
)

// Every transition of a person, against the diagram on personState: each
// state under each event, with and without a grace period and a resume
// window where they matter.
func TestPersonStateMachine(t *testing.T) {
	var (
		plain    = rules{grace: true}               // the defaults: a grace period, no resume window
		noGrace  = rules{}                          // Options.Grace negative
		resuming = rules{grace: true, resume: true} // Options.Resume set
	)
	for _, tc := range []struct {
		from personState
		ev   personEvent
		r    rules
		to   personState
		do   personAction
	}{
		{stClaimed, evStream, plain, stPresent, doArrive},
		{stClaimed, evEnded, plain, stClaimed, doNothing},
		{stClaimed, evVanished, plain, stClaimed, doNothing},
		{stClaimed, evNodeLost, plain, stClaimed, doNothing},
		{stClaimed, evTimer, plain, stGone, doDrop},
		{stClaimed, evTimer, resuming, stGone, doDrop}, // a claim never announced is never away
		{stClaimed, evLeave, plain, stGone, doDrop},
		{stClaimed, evRename, plain, stGone, doDrop},

		{stPresent, evStream, plain, stPresent, doNothing},
		{stPresent, evEnded, plain, stGrace, doGrace},
		{stPresent, evEnded, resuming, stGrace, doGrace},
		{stPresent, evEnded, noGrace, stGone, doDepart},
		{stPresent, evEnded, rules{resume: true}, stAway, doAway},
		{stPresent, evVanished, plain, stGone, doDepart},
		{stPresent, evVanished, resuming, stAway, doAway},
		{stPresent, evNodeLost, plain, stGone, doDepart},
		{stPresent, evNodeLost, resuming, stAway, doAway},
		{stPresent, evTimer, plain, stPresent, doNothing},
		{stPresent, evLeave, plain, stGone, doDepart},
		{stPresent, evLeave, resuming, stGone, doDepart}, // a leave is never resumable
		{stPresent, evRename, plain, stGone, doDepart},
		{stPresent, evRename, resuming, stGone, doDepart},

		{stGrace, evStream, plain, stPresent, doStay},
		{stGrace, evEnded, plain, stGrace, doNothing},
		{stGrace, evVanished, plain, stGrace, doNothing},
		{stGrace, evNodeLost, plain, stGrace, doNothing},
		{stGrace, evTimer, plain, stGone, doDepart},
		{stGrace, evTimer, resuming, stAway, doAway},
		{stGrace, evLeave, plain, stGone, doDepart},
		{stGrace, evLeave, resuming, stGone, doDepart},
		{stGrace, evRename, resuming, stGone, doDepart},

		{stAway, evStream, resuming, stPresent, doReturn},
		{stAway, evEnded, resuming, stAway, doNothing},
		{stAway, evVanished, resuming, stAway, doNothing},
		{stAway, evNodeLost, resuming, stAway, doNothing},
		{stAway, evTimer, resuming, stGone, doDrop},
		{stAway, evLeave, resuming, stGone, doDrop}, // announced gone already: silent
		{stAway, evRename, resuming, stGone, doDrop},

		{stGone, evStream, plain, stGone, doNothing},
		{stGone, evEnded, plain, stGone, doNothing},
		{stGone, evVanished, plain, stGone, doNothing},
		{stGone, evNodeLost, plain, stGone, doNothing},
		{stGone, evTimer, resuming, stGone, doNothing},
		{stGone, evLeave, plain, stGone, doNothing},
		{stGone, evRename, plain, stGone, doNothing},
	} {
		t.Run(fmt.Sprintf("%s+%s/%+v", tc.from, tc.ev, tc.r), func(t *testing.T) {
			to, do := step(tc.from, tc.ev, tc.r)
			if to != tc.to || do != tc.do {
				t.Fatalf("step(%s, %s, %+v) = %s, %s; want %s, %s", tc.from, tc.ev, tc.r, to, do, tc.to, tc.do)
			}
		})
	}
}
