package lobby

import (
	"net/http"
	"net/http/httptest"
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
