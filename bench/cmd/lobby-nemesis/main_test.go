package main

import (
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-mode", "triple"}, "-mode must be cluster or single"},
		{[]string{"-mode", "single", "-faults", "nats-wipe"}, `"nats-wipe" is not a fault of single mode`},
		{[]string{"-faults", "kill,melt"}, `"melt" is not a fault`},
		{[]string{"-people", "1"}, "-people must be 2 to"},
		{[]string{"-every", "0s"}, "-every must be positive"},
		{[]string{"-duration", "-1s"}, "must not be negative"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	c, err := parseFlags([]string{"-mode", "single"}, io.Discard)
	if err != nil || !slices.Equal(c.faults, singleFaults) || c.seed == 0 {
		t.Errorf("single defaults: %+v, %v", c, err)
	}
	c, err = parseFlags([]string{"-faults", "none", "-seed", "5"}, io.Discard)
	if err != nil || len(c.faults) != 0 || c.seed != 5 {
		t.Errorf("-faults none: %+v, %v", c, err)
	}
}

func TestPlanIsSeeded(t *testing.T) {
	c := &cluster{nodes: []*lobbyNode{{proc: &proc{name: "lobby-1"}}, {proc: &proc{name: "lobby-2"}}},
		nats: []*natsServer{{proc: &proc{name: "nats-1"}}}}
	people := []*person{{name: "p01"}, {name: "p02"}}
	a := plan(rand.New(rand.NewPCG(9, 9)), 2*time.Minute, allFaults, c, people)
	b := plan(rand.New(rand.NewPCG(9, 9)), 2*time.Minute, allFaults, c, people)
	if len(a) < 10 || !slices.Equal(a, b) {
		t.Fatalf("two plans of one seed differ, or are short: %d and %d faults", len(a), len(b))
	}
	kinds := map[string]bool{}
	for i, f := range a {
		kinds[f.kind] = true
		if f.target == "" || f.offset >= 2*time.Minute || i > 0 && f.offset <= a[i-1].offset {
			t.Errorf("fault %d: %+v", i, f)
		}
	}
	if len(kinds) < 5 {
		t.Errorf("only %d kinds drawn in 2 minutes", len(kinds))
	}
	if plan(rand.New(rand.NewPCG(9, 9)), time.Minute, nil, c, people) != nil {
		t.Error("a plan without kinds has faults")
	}
}
