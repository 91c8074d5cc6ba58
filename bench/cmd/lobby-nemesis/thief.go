package main

import (
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	"github.com/sfere-go/sfere/bench/internal/history"
)

// thief tries, every few seconds, to join under the name of a person who is
// in the lobby, from a fresh browser (no cookies). The lobby must refuse
// (409); a join it accepts while the person still holds the name is a name
// held twice, which the checker counts. An accepted thief leaves at once.
func thief(ctx context.Context, base string, ip net.IP, log *history.Log, rng *rand.Rand, people []*person) {
	for ctx.Err() == nil {
		sleep(ctx, span(rng, 2*time.Second, 5*time.Second))
		victim := people[rng.IntN(len(people))]
		victim.mu.Lock()
		joined := victim.joined
		victim.mu.Unlock()
		if !joined || ctx.Err() != nil {
			continue
		}
		b := newBrowser("thief", base, ip, log)
		a := b.do(ctx, http.MethodPost, "/join", `{"username":`+jsonString(victim.name)+`}`, history.Record{Name: victim.name})
		if a.err == nil && a.status == http.StatusOK {
			b.do(context.WithoutCancel(ctx), http.MethodPost, "/leave", "{}", history.Record{})
		}
		b.closeIdle()
	}
}
