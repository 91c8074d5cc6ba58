package history

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLogRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	l := NewLog(&buf)
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	l.Add(Record{Kind: KindRequest, At: at, Client: "ann", Route: "/message", Status: 200, Text: "ann-1", Seq: 1})
	l.Add(Record{Kind: KindEvent, Client: "bob", Page: 1, ID: "e-3", Chat: []Chat{{"ann", "ann-1"}}, Ann: []Announce{{"cy", Joined}}})
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	recs, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("read %d records, want 2", len(recs))
	}
	if !recs[0].At.Equal(at) || recs[0].Text != "ann-1" || recs[0].Seq != 1 {
		t.Errorf("first record = %+v", recs[0])
	}
	if recs[1].At.IsZero() {
		t.Error("Add did not stamp the time")
	}
	if len(recs[1].Chat) != 1 || recs[1].Chat[0].Speaker != "ann" || recs[1].Ann[0].What != Joined {
		t.Errorf("second record = %+v", recs[1])
	}
}

func TestReadRejectsMalformedLines(t *testing.T) {
	for _, in := range []string{"{\"kind\":\"event\"}\nnot json\n", "{\"at\":\"2026-01-01T00:00:00Z\"}\n"} {
		_, err := Read(strings.NewReader(in))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("Read(%q) = %v, want ErrMalformed", in, err)
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestLogKeepsTheFirstWriteError(t *testing.T) {
	l := NewLog(failWriter{})
	l.Add(Record{Kind: KindMeta})
	if err := l.Flush(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Flush = %v, want the writer's error", err)
	}
}
