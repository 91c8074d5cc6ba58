package main

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// The scanner finds every mark once and every stamp once, however the
// stream is cut into reads, and passes over '^' that start no stamp.
func TestScannerAcrossReads(t *testing.T) {
	body := "data: elements <p>^1:100^</p>\n" +
		strings.Repeat("x", 300) + `<p class="system-message">st-00001 joined the lobby</p>` + "\n" +
		"data: elements <p>a^b ^12:^ ^7:700^ ^3:</p>\n" + strings.Repeat("y", 5000) +
		"storm-chat-z ^8:800^ >st-00001 joined the lobby< ^9:900^ -cuq left the lobby<-cuq left the lobby<"
	for name, r := range map[string]func() io.Reader{
		"whole":     func() io.Reader { return strings.NewReader(body) },
		"bytes":     func() io.Reader { return iotest.OneByteReader(strings.NewReader(body)) },
		"half-full": func() io.Reader { return iotest.HalfReader(strings.NewReader(body)) },
	} {
		t.Run(name, func(t *testing.T) {
			marks := map[int]int{}
			stamps := map[uint64]int64{}
			dup := 0
			s := newScanner(64, [][]byte{[]byte(">st-00001 joined the lobby<"), []byte("storm-chat-z")},
				func(i int, _ time.Time) { marks[i]++ },
				func(seq uint64, ts int64, _ time.Time) {
					if _, ok := stamps[seq]; ok {
						dup++
					}
					stamps[seq] = ts
				})
			s.count([]byte(" joined the lobby<"), []byte("-cuq left the lobby<"), []byte("absent"))
			if err := s.run(r()); err != io.EOF {
				t.Fatalf("run: %v", err)
			}
			if marks[0] != 1 || marks[1] != 1 {
				t.Errorf("marks found %v, want each once", marks)
			}
			if j, l, none := s.counted[0].Load(), s.counted[1].Load(), s.counted[2].Load(); j != 2 || l != 2 || none != 0 {
				t.Errorf("counted %d joined, %d left, %d absent; want 2, 2, 0", j, l, none)
			}
			want := map[uint64]int64{1: 100, 7: 700, 8: 800, 9: 900}
			if len(stamps) != len(want) || dup != 0 {
				t.Errorf("stamps %v (%d seen twice), want %v", stamps, dup, want)
			}
			for seq, ts := range want {
				if stamps[seq] != ts {
					t.Errorf("stamp %d: ts %d, want %d", seq, stamps[seq], ts)
				}
			}
		})
	}
}

func TestPercentiles(t *testing.T) {
	v := make([]float64, 0, 100)
	for i := 100; i >= 1; i-- {
		v = append(v, float64(i))
	}
	p := percentiles(v)
	if p.Count != 100 || p.P50 != 50 || p.P90 != 90 || p.P99 != 99 || p.Max != 100 {
		t.Errorf("percentiles of 1..100 = %+v", p)
	}
	if p := percentiles(nil); p.Count != 0 || p.Max != 0 {
		t.Errorf("percentiles of nothing = %+v", p)
	}
}
