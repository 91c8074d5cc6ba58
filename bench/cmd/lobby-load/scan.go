package main

import (
	"bytes"
	"io"
	"sync/atomic"
	"time"
)

// scanner reads one stream's decoded body and reports, with the time the
// read returned:
//   - the first occurrence of each fixed mark (a person's own "joined"
//     line, a chat text), and
//   - with stamps on, every ^seq:unixnano^ stamp (chat lines of the churn),
//     each once;
//   - how many times each counted pattern occurred (see [scanner.count]).
//
// It works on a fixed buffer and never copies more than a partial mark or
// stamp across reads, so a mark split between two reads is still found.
// Once every mark is found and stamps are off, it only drains the stream.
type scanner struct {
	marks   [][]byte
	onMark  func(i int, at time.Time)
	onStamp func(seq uint64, ts int64, at time.Time) // nil: stamps off

	// counted patterns, their counts (read by other goroutines), and
	// where the next search for each starts
	counts    [][]byte
	counted   []atomic.Int64
	countFrom []int

	buf                 []byte
	n                   int // bytes in buf
	markFrom, stampFrom int // where the next mark and stamp searches start
	found               []bool
	left                int // marks not yet found
	maxMark             int
}

// count makes s count every occurrence of each pattern; s.counted[i] is
// the count of patterns[i]. Call it before run.
func (s *scanner) count(patterns ...[]byte) {
	s.counts = patterns
	s.counted = make([]atomic.Int64, len(patterns))
	s.countFrom = make([]int, len(patterns))
}

func newScanner(bufSize int, marks [][]byte, onMark func(int, time.Time), onStamp func(uint64, int64, time.Time)) *scanner {
	s := &scanner{marks: marks, onMark: onMark, onStamp: onStamp, buf: make([]byte, bufSize),
		found: make([]bool, len(marks)), left: len(marks)}
	for _, m := range marks {
		s.maxMark = max(s.maxMark, len(m))
	}
	return s
}

// run reads r until it ends and returns the error that ended it.
func (s *scanner) run(r io.Reader) error {
	for {
		if s.left == 0 && s.onStamp == nil && s.counts == nil {
			s.n, s.markFrom, s.stampFrom = 0, 0, 0 // nothing left to find
		}
		if s.n == len(s.buf) {
			s.compact()
			if s.n == len(s.buf) { // cannot happen with a sane buffer
				s.n, s.markFrom, s.stampFrom = 0, 0, 0
				clear(s.countFrom)
			}
		}
		k, err := r.Read(s.buf[s.n:])
		if k > 0 {
			s.n += k
			s.scan(time.Now())
			if s.n > len(s.buf)/2 {
				s.compact()
			}
		}
		if err != nil {
			return err
		}
	}
}

func (s *scanner) scan(now time.Time) {
	data := s.buf[:s.n]
	if s.left > 0 {
		for i, m := range s.marks {
			if !s.found[i] && bytes.Contains(data[s.markFrom:], m) {
				s.found[i] = true
				s.left--
				s.onMark(i, now)
			}
		}
		s.markFrom = max(0, s.n-(s.maxMark-1))
	} else {
		s.markFrom = s.n
	}
	for i, p := range s.counts {
		from := s.countFrom[i]
		for {
			j := bytes.Index(data[from:], p)
			if j < 0 {
				break
			}
			s.counted[i].Add(1)
			from += j + len(p)
		}
		s.countFrom[i] = max(from, s.n-(len(p)-1))
	}
	if s.onStamp == nil {
		s.stampFrom = s.n
		return
	}
	for s.stampFrom < s.n {
		j := bytes.IndexByte(data[s.stampFrom:], '^')
		if j < 0 {
			s.stampFrom = s.n
			return
		}
		at := s.stampFrom + j
		seq, ts, end, ok := parseStamp(data[at:])
		switch {
		case end < 0: // the stamp goes on in the next read
			s.stampFrom = at
			return
		case ok:
			s.onStamp(seq, ts, now)
			s.stampFrom = at + end
		default:
			s.stampFrom = at + 1
		}
	}
}

// parseStamp reads "^seq:ts^" at the start of b. end is the length of the
// stamp, or -1 if b ends before the stamp could be decided; ok says
// whether it is a stamp.
func parseStamp(b []byte) (seq uint64, ts int64, end int, ok bool) {
	i := 1
	digits := func() (uint64, bool, bool) { // value, any digit, b ended
		var v uint64
		start := i
		for ; i < len(b); i++ {
			c := b[i]
			if c < '0' || c > '9' {
				return v, i > start, false
			}
			v = v*10 + uint64(c-'0')
		}
		return v, i > start, true
	}
	seq, any, ended := digits()
	if ended {
		return 0, 0, -1, false
	}
	if !any || b[i] != ':' {
		return 0, 0, 0, false
	}
	i++
	t, any, ended := digits()
	if ended {
		return 0, 0, -1, false
	}
	if !any || b[i] != '^' {
		return 0, 0, 0, false
	}
	return seq, int64(t), i + 1, true
}

// compact moves what a later search still needs to the buffer's start.
func (s *scanner) compact() {
	keep := min(s.markFrom, s.stampFrom)
	for _, from := range s.countFrom {
		keep = min(keep, from)
	}
	if keep <= 0 {
		return
	}
	copy(s.buf, s.buf[keep:s.n])
	s.n -= keep
	s.markFrom -= keep
	s.stampFrom -= keep
	for i := range s.countFrom {
		s.countFrom[i] -= keep
	}
}
