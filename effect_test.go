package sfere

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/starfederation/datastar-go/datastar"
)

func TestRenderEffects(t *testing.T) {
	sig, err := MarshalSignals(map[string]string{"message": ""})
	if err != nil {
		t.Fatal(err)
	}
	// datastar-go ends each event with one extra blank line; SSE parsers
	// dispatch nothing for it.
	tests := []struct {
		effect Effect
		want   string
	}{
		{PatchElements(`<p id="a">hi</p>`), "event: datastar-patch-elements\ndata: elements <p id=\"a\">hi</p>\n\n\n"},
		{AppendElements("#messages", "<li>x</li>"), "event: datastar-patch-elements\ndata: selector #messages\ndata: mode append\ndata: elements <li>x</li>\n\n\n"},
		{RemoveElements("#participant-brian"), "event: datastar-patch-elements\ndata: selector #participant-brian\ndata: mode remove\n\n\n"},
		{sig, "event: datastar-patch-signals\ndata: signals {\"message\":\"\"}\n\n\n"},
		{Comment("heartbeat"), ": heartbeat\n\n"},
		{CloseStream(), ""},
	}
	for _, tt := range tests {
		got, err := Render(tt.effect)
		if err != nil {
			t.Fatalf("Render(%+v): %v", tt.effect, err)
		}
		if string(got) != tt.want {
			t.Errorf("Render(%s) =\n%q\nwant\n%q", tt.effect.Kind, got, tt.want)
		}
	}
	script, err := Render(ExecuteScript("console.log(1)"))
	if err != nil || !strings.Contains(string(script), "data: elements <script data-effect=\"el.remove()\">console.log(1)</script>") {
		t.Fatalf("ExecuteScript rendered %q, %v", script, err)
	}
}

// No text inside an effect can start an SSE line of its own.
func TestRenderCannotForgeSSELines(t *testing.T) {
	out, err := Render(
		PatchElements("<p>a\r\nevent: datastar-patch-signals\rdata: signals {\"x\":1}\n\nb</p>"),
		Comment("one\ntwo\r\n\ndata: x"),
		ExecuteScript("a\rb"),
	)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if line == "" || strings.HasPrefix(line, ": ") || strings.HasPrefix(line, "data: ") {
			continue
		}
		if line != "event: datastar-patch-elements" {
			t.Fatalf("forged line %q in %q", line, out)
		}
	}
	if strings.Contains(string(out), "\r") {
		t.Fatalf("a CR survived: %q", out)
	}
	for _, bad := range []Effect{
		AppendElements("#a\nevent: x", "<p></p>"),
		RemoveElements("#a\rb"),
		RemoveElements(""),
		PatchSignals(json.RawMessage(`[1,2]`)),
		PatchSignals(json.RawMessage(`{"a":`)),
		PatchElementsAt("#a", datastar.ElementPatchMode("sideways"), "<p></p>"),
		{Kind: "unknown"},
		// Options on kinds they do not apply to, or malformed.
		PatchElements("<p></p>").WithScopedViewTransition("#a\nevent: x"),
		PatchElements("<p></p>").InNamespace("xhtml"),
		{Kind: KindPatchElements, Elements: "<p></p>", ViewTransitionSelector: "#a"},
		RemoveElements("#a").InNamespace(datastar.NamespaceSVG),
		ExecuteScript("x()").WithViewTransition(),
		PatchSignals(json.RawMessage(`{}`)).InNamespace(datastar.NamespaceSVG),
		PatchElements("<p></p>").Kept(),
		RemoveElements("#a").WithAttributes(`type="module"`),
		PatchElements("<p></p>").IfMissing(),
		Comment("x").WithViewTransition(),
	} {
		if _, err := Render(bad); !errors.Is(err, ErrBadEffect) {
			t.Errorf("Render(%+v) error = %v, want ErrBadEffect", bad, err)
		}
	}
	if _, err := Render(CloseStream(), Comment("after")); !errors.Is(err, ErrBadEffect) {
		t.Errorf("an effect after close-stream rendered: %v", err)
	}
}

func TestSignalsWithLineBreaksStayOneLine(t *testing.T) {
	out, err := Render(PatchSignals(json.RawMessage("{\r\n \"a\" :\n 1}")))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "event: datastar-patch-signals\ndata: signals {\"a\":1}\n\n\n" {
		t.Fatalf("got %q", out)
	}
}

func TestEffectJSONRoundTrip(t *testing.T) {
	effects := []Effect{
		AppendElements("#messages", "<li>x</li>"),
		PatchSignals(json.RawMessage(`{"message":""}`)),
		PatchSignals(json.RawMessage(`{"draft":""}`)).IfMissing(),
		AppendElements("#chart", `<circle r="4"/>`).InNamespace(datastar.NamespaceSVG).WithScopedViewTransition("#chart"),
		RemoveElements("#old").WithViewTransition(),
		ExecuteScript("init()").WithAttributes(`type="module"`).Kept(),
		Comment("hb"),
		CloseStream(),
	}
	b, err := json.Marshal(effects)
	if err != nil {
		t.Fatal(err)
	}
	var back []Effect
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	want, err := Render(effects...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Render(back...)
	if err != nil || string(got) != string(want) {
		t.Fatalf("round trip through %s rendered %q, %v; want %q", b, got, err, want)
	}
}

func FuzzRenderOneEventPerEffect(f *testing.F) {
	f.Add("<p>hi</p>", "#x", "text")
	f.Add("a\r\nb\rc\n", "#participant-a", "x\ny")
	f.Fuzz(func(t *testing.T, elements, selector, text string) {
		out, err := Render(AppendElements(selector, elements), Comment(text))
		if err != nil {
			if !strings.ContainsAny(selector, "\r\n") {
				t.Fatalf("Render failed without a line break in the selector: %v", err)
			}
			return
		}
		if strings.Contains(string(out), "\r") {
			t.Fatalf("CR in output %q", out)
		}
		events := 0
		for line := range strings.SplitSeq(string(out), "\n") {
			switch {
			case strings.HasPrefix(line, "event: "):
				events++
			case line == "", strings.HasPrefix(line, ": "), strings.HasPrefix(line, "data: "):
			default:
				t.Fatalf("line %q is neither data nor comment in %q", line, out)
			}
		}
		if events != 1 {
			t.Fatalf("%d events for one patch in %q", events, out)
		}
	})
}

// Options are copies: adding one to an effect leaves the effect it came
// from as it was, so a base effect can be shared.
func TestEffectOptionsCopy(t *testing.T) {
	base := ExecuteScript("x()").WithAttributes(`a="1"`)
	one := base.WithAttributes(`b="2"`)
	two := base.WithAttributes(`c="3"`).Kept()
	if len(base.ScriptAttributes) != 1 || base.KeepScript {
		t.Fatalf("base changed: %+v", base)
	}
	if strings.Join(one.ScriptAttributes, " ") != `a="1" b="2"` || strings.Join(two.ScriptAttributes, " ") != `a="1" c="3"` {
		t.Fatalf("one %v, two %v", one.ScriptAttributes, two.ScriptAttributes)
	}
	out, err := Render(ExecuteScript("a\rb").WithAttributes("data-x=\"1\r\"").Kept())
	if err != nil || strings.Contains(string(out), "\r") || strings.Contains(string(out), "el.remove()") {
		t.Fatalf("kept script rendered %q, %v", out, err)
	}
}
