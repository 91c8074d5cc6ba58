package history

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// ErrMalformed is returned (wrapped) by [Read] for a line that is not a
// record.
var ErrMalformed = errors.New("history: malformed record")

// Log appends records to a writer, one JSON object a line; it is safe for
// concurrent use. A Log whose writer failed keeps the first error and
// drops the rest of the records (see [Log.Err]).
type Log struct {
	now func() time.Time

	mu  sync.Mutex
	w   *bufio.Writer
	enc *json.Encoder
	err error
}

// NewLog returns a Log that writes to w. Call [Log.Flush] at the end.
func NewLog(w io.Writer) *Log {
	bw := bufio.NewWriterSize(w, 64<<10)
	return &Log{now: time.Now, w: bw, enc: json.NewEncoder(bw)}
}

// Add appends r, stamping At with the current time if it is zero.
func (l *Log) Add(r Record) {
	if r.At.IsZero() {
		r.At = l.now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return
	}
	if err := l.enc.Encode(&r); err != nil {
		l.err = fmt.Errorf("history: write: %w", err)
	}
}

// Flush writes out what is buffered and returns the first error the Log
// met.
func (l *Log) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		if err := l.w.Flush(); err != nil {
			l.err = fmt.Errorf("history: write: %w", err)
		}
	}
	return l.err
}

// Err returns the first error the Log met, if any.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// maxLine bounds one record's line.
const maxLine = 4 << 20

// Read reads every record of a history. Blank lines are skipped; any
// other line that is not a record is an error naming its line number.
func Read(r io.Reader) ([]Record, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var out []Record
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(line, &rec); err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrMalformed, n, err)
		}
		if rec.Kind == "" {
			return nil, fmt.Errorf("%w: line %d: no kind", ErrMalformed, n)
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("history: read: %w", err)
	}
	return out, nil
}
