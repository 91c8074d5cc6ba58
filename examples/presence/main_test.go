package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

const ceiling = 20 * time.Second

// Two tabs of one person are one entry; a second person's arrival reaches
// both tabs; leaving removes the person from the others' lists.
func TestRunShowsPeopleNotTabs(t *testing.T) {
	addr := ssetest.Serve(t, ceiling, run).Addr
	join(t, addr, "user=brian&session=s1&name=Brian")
	tab1, tab2 := openTab(t, addr, "s1"), openTab(t, addr, "s1")
	for _, tab := range []*ssetest.Client{tab1, tab2} {
		tab.Wait(ceiling, ssetest.Containing(`<li id="person-brian">Brian</li>`))
	}
	join(t, addr, "user=phil&session=s2&name=%3Cb%3EPhil")
	phil := openTab(t, addr, "s2")
	for _, tab := range []*ssetest.Client{tab1, tab2} {
		tab.Wait(ceiling, ssetest.Containing(`elements <li id="person-phil">&lt;b&gt;Phil</li>`))
	}
	// Phil's tab gets the list as it was before his arrival's batch, then
	// the batch (his own arrival) like everyone else.
	phil.Wait(ceiling, ssetest.Containing(`<ul id="people"><li id="person-brian">Brian</li></ul>`))
	phil.Wait(ceiling, ssetest.Containing(`elements <li id="person-phil">&lt;b&gt;Phil</li>`))
	if status := post(t, "http://"+addr+"/leave?session=s1"); status != http.StatusOK {
		t.Fatalf("leave: %d", status)
	}
	phil.Wait(ceiling, ssetest.Containing("selector #person-brian"))
	tab1.WaitEnd(ceiling)
	tab2.WaitEnd(ceiling)
}

func join(t *testing.T, addr, query string) {
	t.Helper()
	if status := post(t, "http://"+addr+"/join?"+query); status != http.StatusOK {
		t.Fatalf("join %s: %d", query, status)
	}
}

func openTab(t *testing.T, addr, session string) *ssetest.Client {
	t.Helper()
	return ssetest.Open(t, addr, ssetest.Request{Method: http.MethodPost, Target: "/sse?session=" + session})
}

func post(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
