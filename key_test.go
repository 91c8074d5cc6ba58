package sfere

import (
	"errors"
	"testing"
)

// The match table the original sfere is tested against (NOTES §1), row by row.
func TestPatternMatchTable(t *testing.T) {
	room := func(scope, id string) Key { return NewKey(scope, "room", id) }
	game := func(scope, id string) Key { return NewKey(scope, "game", id) }
	tests := []struct {
		name    string
		pattern Pattern
		key     Key
		want    bool
	}{
		{"exact same", NewPattern(Exactly("u1"), Exactly("room"), Exactly("lobby")), room("u1", "lobby"), true},
		{"exact other scope", NewPattern(Exactly("u1"), Exactly("room"), Exactly("lobby")), room("u2", "lobby"), false},
		{"any scope u1", NewPattern(Any, Exactly("room"), Exactly("lobby")), room("u1", "lobby"), true},
		{"any scope u2", NewPattern(Any, Exactly("room"), Exactly("lobby")), room("u2", "lobby"), true},
		{"any scope other pair", NewPattern(Any, Exactly("room"), Exactly("lobby")), game("u1", "42"), false},
		{"scope then any pair: room", InScope("u1"), room("u1", "lobby"), true},
		{"scope then any pair: game", InScope("u1"), game("u1", "42"), true},
		{"scope then any pair: other scope", InScope("u1"), room("u2", "lobby"), false},
		{"any id lobby", NewPattern(Any, Exactly("room"), Any), room("u1", "lobby"), true},
		{"any id other", NewPattern(Any, Exactly("room"), Any), room("u1", "other"), true},
		{"any id other category", NewPattern(Any, Exactly("room"), Any), game("u1", "42"), false},
		{"all: room", All, room("u1", "lobby"), true},
		{"all: game", All, game("u2", "42"), true},
		{"all: empty key", All, Key{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.pattern.Match(tt.key); got != tt.want {
				t.Errorf("%v.Match(%v) = %v, want %v", tt.pattern, tt.key, got, tt.want)
			}
		})
	}
}

func TestLiteralStarIsNotAWildcard(t *testing.T) {
	star := NewKey("default", "lobby", "*")
	if !star.Pattern().Match(star) {
		t.Fatal("a key's own pattern must match it")
	}
	if star.Pattern().Match(NewKey("default", "lobby", "brian")) {
		t.Fatal(`Exactly("*") matched "brian": a literal * must not act as a wildcard`)
	}
	if InCategory("*").Match(NewKey("default", "lobby", "x")) {
		t.Fatal(`category "*" matched category "lobby"`)
	}
	if got := star.String(); got != "default/lobby/%2A" {
		t.Fatalf("String() = %q, want the * escaped", got)
	}
	p, err := ParsePattern("*/lobby/%2A")
	if err != nil {
		t.Fatal(err)
	}
	if !p.Scope.IsAny() || p.ID.IsAny() || p.ID.Value() != "*" {
		t.Fatalf("ParsePattern(*/lobby/%%2A) = %+v", p)
	}
}

func TestKeyText(t *testing.T) {
	tests := []struct {
		key  Key
		text string
	}{
		{NewKey(DefaultScope, "lobby", "brian"), "default/lobby/brian"},
		{NewKey("a/b", "c.d", "e f"), "a%2Fb/c%2Ed/e%20f"},
		{NewKey("", "", ""), "//"},
		{NewKey("Jürgen", ">", "100%"), "J%C3%BCrgen/%3E/100%25"},
	}
	for _, tt := range tests {
		if got := tt.key.String(); got != tt.text {
			t.Errorf("%#v.String() = %q, want %q", tt.key, got, tt.text)
		}
		back, err := ParseKey(tt.text)
		if err != nil || back != tt.key {
			t.Errorf("ParseKey(%q) = %#v, %v; want %#v", tt.text, back, err, tt.key)
		}
	}
}

func TestParseKeyErrors(t *testing.T) {
	for _, text := range []string{"", "a", "a/b", "a/b/c/d", "a/*/c", "a/b/%", "a/b/%4", "a/b/%zz", "a b/c/d", "a/b.c/d"} {
		if _, err := ParseKey(text); !errors.Is(err, ErrBadText) {
			t.Errorf("ParseKey(%q) error = %v, want ErrBadText", text, err)
		}
	}
	if _, err := ParsePattern("a/b"); !errors.Is(err, ErrBadText) {
		t.Errorf("ParsePattern(a/b) error = %v, want ErrBadText", err)
	}
}

func TestKeyJSONForm(t *testing.T) {
	k := NewKey("s", "lobby", "a/b")
	text, err := k.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	var back Key
	if err := back.UnmarshalText(text); err != nil || back != k {
		t.Fatalf("UnmarshalText(%s) = %v, %v", text, back, err)
	}
	var p Pattern
	if err := p.UnmarshalText([]byte("*/lobby/*")); err != nil || p != InCategory("lobby") {
		t.Fatalf("Pattern.UnmarshalText = %v, %v", p, err)
	}
}

func TestExclusionMatchers(t *testing.T) {
	brian, phil := NewKey("d", "lobby", "brian"), NewKey("d", "lobby", "phil")
	set := Keys(brian)
	for _, tt := range []struct {
		m    Matcher
		k    Key
		want bool
	}{
		{set, brian, true}, {set, phil, false},
		{brian, brian, true}, {brian, phil, false},
		{InCategory("lobby"), phil, true},
	} {
		if got := tt.m.Match(tt.k); got != tt.want {
			t.Errorf("%v.Match(%v) = %v, want %v", tt.m, tt.k, got, tt.want)
		}
	}
}

func FuzzKeyText(f *testing.F) {
	for _, s := range []string{"", "default", "lobby", "brian", "*", "a/b", "c.d", "e f", "Jürgen", ">", "%", "%2A", "\x00\xff"} {
		f.Add(s, "lobby", s)
	}
	f.Fuzz(func(t *testing.T, scope, category, id string) {
		k := NewKey(scope, category, id)
		text := k.String()
		back, err := ParseKey(text)
		if err != nil {
			t.Fatalf("ParseKey(%q) of %#v: %v", text, k, err)
		}
		if back != k {
			t.Fatalf("round trip of %#v gave %#v via %q", k, back, text)
		}
		for i := 0; i < len(text); i++ {
			if c := text[i]; c == ' ' || c == '.' || c == '*' || c == '>' || c > 0x7e || c < 0x21 {
				t.Fatalf("text form %q has byte %q", text, c)
			}
		}
		p := k.Pattern()
		pb, err := ParsePattern(p.String())
		if err != nil || pb != p || !pb.Match(k) {
			t.Fatalf("pattern round trip of %#v: %v, %v", p, pb, err)
		}
	})
}

func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{"*/*/*", "*/lobby/*", "u1/*/*", "a/b/%2A", "//", "a/b", "%", "a/b/c/d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		p, err := ParsePattern(text)
		if err != nil {
			return
		}
		again, err := ParsePattern(p.String())
		if err != nil || again != p {
			t.Fatalf("%q parsed to %v, whose text %q parsed to %v, %v", text, p, p.String(), again, err)
		}
		if k, err := ParseKey(text); err == nil && !p.Match(k) {
			t.Fatalf("key %v does not match the pattern of its own text %q", k, text)
		}
	})
}
