package ssetest

import (
	"strings"
	"testing"
	"time"
)

func TestParseReadsAWholeText(t *testing.T) {
	text := "event: a\nid: 1\nretry: 2000\ndata: x\ndata: y\n\n: note\n\nevent: b\ndata: z\n\nevent: cut\ndata: never ended\n"
	events, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 {
		t.Fatalf("%d events, want 3 (the unended last one dropped): %v", len(events), events)
	}
	a, note, b := events[0], events[1], events[2]
	if a.Type != "a" || a.Text() != "x\ny" || !a.HasID || a.ID != "1" || !a.HasRetry || a.Retry != 2*time.Second || a.Seq != 0 {
		t.Errorf("first event %+v", a)
	}
	if !note.IsComment || note.Comment != "note" || note.Seq != 1 {
		t.Errorf("comment %+v", note)
	}
	if b.Type != "b" || b.Text() != "z" || b.Seq != 2 {
		t.Errorf("last event %+v", b)
	}
}
