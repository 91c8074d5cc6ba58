package ssetest

import (
	"errors"
	"slices"
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

// ReadEvents hands over events and lines as they come, and stops at the
// first error emit returns.
func TestReadEventsStopsWhenEmitFails(t *testing.T) {
	stop := errors.New("enough")
	body := strings.NewReader("data: a\r\n\r\n: beat\n\ndata: b\n\ndata: c\n\n")
	var got, lines []string
	err := ReadEvents(body, func(e Event) error {
		if e.IsComment {
			got = append(got, ":"+e.Comment)
			return nil
		}
		got = append(got, e.Text())
		if e.Text() == "b" {
			return stop
		}
		return nil
	}, func(l string) { lines = append(lines, l) })
	if err != stop {
		t.Fatalf("ReadEvents returned %v, want emit's error", err)
	}
	if want := []string{"a", ":beat", "b"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if want := []string{"data: a\r", "\r", ": beat", "", "data: b", ""}; !slices.Equal(lines, want) {
		t.Errorf("lines %q, want %q", lines, want)
	}
}
