package lobby

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A member cookie carries its issue time under the MAC: a later run
// honours it until MemberMaxAge has passed since it was signed, never
// after, and a changed issue time breaks the MAC.
func TestMemberCookieExpires(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	t0 := time.Unix(1_800_000_000, 0)
	first, err := newSigner(key, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	first.now = func() time.Time { return t0 }
	sid := newSessionID()
	rec := httptest.NewRecorder()
	first.setMember(rec, false, sid, "brian")
	cookie := rec.Result().Cookies()[0]
	if cookie.MaxAge != 3600 {
		t.Errorf("member cookie Max-Age %d, want 3600", cookie.MaxAge)
	}
	later, err := newSigner(key, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ask := func(value string, at time.Time) (string, bool) {
		later.now = func() time.Time { return at }
		r := httptest.NewRequest(http.MethodPost, "/sse", nil)
		r.AddCookie(&http.Cookie{Name: memberCookie, Value: value})
		return later.earlierMember(r, false, sid)
	}
	if name, ok := ask(cookie.Value, t0.Add(59*time.Minute)); !ok || name != "brian" {
		t.Fatalf("within its lifetime: %q, %v", name, ok)
	}
	if _, ok := ask(cookie.Value, t0.Add(time.Hour)); ok {
		t.Fatal("honoured once its lifetime had passed")
	}
	// Moving the issue time forward breaks the MAC.
	parts := strings.Split(cookie.Value, ".")
	parts[2] = "1800003000"
	if _, ok := ask(parts[0]+"."+parts[1]+"."+parts[2]+"."+parts[3], t0.Add(59*time.Minute)); ok {
		t.Fatal("a cookie with a changed issue time was honoured")
	}
}

// The record of ended sessions: a session that left is revoked at once;
// one whose resume window runs out from the window's end, unless it came
// back first; each until the cookie lifetime has passed. A later run reads
// the same from the file, and the file is written anew when it holds far
// more lines than the record.
func TestRevocationsRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revoked")
	t0 := time.Unix(1_800_000_000, 0)
	now := t0
	load := func() *revocations {
		t.Helper()
		rv, err := loadRevocations(path, time.Hour, func() time.Time { return now }, slog.Default())
		if err != nil {
			t.Fatal(err)
		}
		return rv
	}
	rv := load()
	if err := rv.revoke("left"); err != nil {
		t.Fatal(err)
	}
	rv.expire("away", t0.Add(time.Minute))
	rv.expire("returned", t0.Add(time.Minute))
	rv.back("returned")
	rv.back("left") // a session that left stays revoked
	if err := rv.close(); err != nil {
		t.Fatal(err)
	}
	check := func(rv *revocations, when string, want map[string]bool) {
		t.Helper()
		for sid, w := range want {
			if got := rv.revoked(sid); got != w {
				t.Errorf("%s: revoked(%q) = %v, want %v", when, sid, got, w)
			}
		}
	}
	check(rv, "at once", map[string]bool{"left": true, "away": false, "returned": false})
	now = t0.Add(time.Minute)
	check(rv, "at the window's end", map[string]bool{"left": true, "away": true, "returned": false})
	check(load(), "read back", map[string]bool{"left": true, "away": true, "returned": false})
	now = t0.Add(time.Hour + time.Second)
	check(load(), "after the cookie lifetime", map[string]bool{"left": false, "away": false, "returned": false})
	if b, err := os.ReadFile(path); err != nil || len(b) != 0 {
		t.Errorf("the lapsed record's file holds %q (%v), want nothing", b, err)
	}

	// Sessions that go away and come back again and again do not grow
	// the file without end.
	rv = load()
	for i := range 5 * minPruneAt {
		sid := fmt.Sprintf("flap%d", i%10)
		rv.expire(sid, now.Add(time.Minute))
		rv.back(sid)
	}
	if err := rv.close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n > 2*minPruneAt+10 {
		t.Errorf("the file holds %d lines for a record of none", n)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the file's mode: %v %v, want 0600", fi.Mode(), err)
	}
	check(load(), "after the flapping", map[string]bool{"flap0": false, "flap9": false})
}
