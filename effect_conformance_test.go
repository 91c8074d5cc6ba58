package sfere

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/starfederation/datastar-go/datastar"
)

// Datastar's SDK conformance suite (the datastar repository's
// sdk/tests/golden) gives, for each of 20 cases, the events an SDK is asked
// to send and the SSE text it must answer with. sdkCases restates every
// case in sfere's terms: the effects that express it and the events the
// client must get. Event ids and the retry interval are the hub's (history
// and HubOptions.Retry), so they are left out here. The last cases go
// beyond the suite: options of the Datastar 1.0 client it does not cover.
//
// Like Datastar's runner, the comparison is field by field: the data lines
// of an event are grouped by their first word (selector, mode, elements,
// ...), the groups compared in any order, the signals as JSON values and
// the elements with each tag's attributes in any order.
var sdkCases = []struct {
	name    string
	effects []Effect
	want    string
}{
	{"executeScriptWithAllOptions",
		[]Effect{ExecuteScript("console.log('hello');").WithAttributes(`type="text/javascript"`, `blocking="false"`).Kept()},
		"event: datastar-patch-elements\ndata: mode append\ndata: selector body\ndata: elements <script blocking=\"false\" type=\"text/javascript\">console.log('hello');</script>\n\n"},
	{"executeScriptWithDefaults",
		[]Effect{ExecuteScript("console.log('hello');")},
		"event: datastar-patch-elements\ndata: selector body\ndata: mode append\ndata: elements <script data-effect=\"el.remove()\">console.log('hello');</script>\n\n"},
	{"executeScriptWithMultilineScript",
		[]Effect{ExecuteScript("if (true) {\n  console.log('hello');\n}")},
		"event: datastar-patch-elements\ndata: selector body\ndata: mode append\ndata: elements <script data-effect=\"el.remove()\">if (true) {\ndata: elements   console.log('hello');\ndata: elements }</script>\n\n"},
	{"executeScriptWithoutDefaults",
		[]Effect{ExecuteScript("console.log('hello');")},
		"event: datastar-patch-elements\ndata: mode append\ndata: selector body\ndata: elements <script data-effect=\"el.remove()\">console.log('hello');</script>\n\n"},
	{"patchElementsWithAllOptions",
		[]Effect{AppendElements("div", "<div>Merge</div>").WithViewTransition()},
		"event: datastar-patch-elements\ndata: useViewTransition true\ndata: selector div\ndata: mode append\ndata: elements <div>Merge</div>\n\n"},
	{"patchElementsWithDefaults",
		[]Effect{PatchElementsAt("", datastar.ElementPatchModeOuter, "<div>Merge</div>")},
		"event: datastar-patch-elements\ndata: elements <div>Merge</div>\n\n"},
	{"patchElementsWithMultilineElements",
		[]Effect{PatchElements("<div>\n  <span>Merge</span>\n</div>")},
		"event: datastar-patch-elements\ndata: elements <div>\ndata: elements   <span>Merge</span>\ndata: elements </div>\n\n"},
	{"patchElementsWithoutDefaults",
		[]Effect{PatchElements("<div>Merge</div>")},
		"event: datastar-patch-elements\ndata: elements <div>Merge</div>\n\n"},
	{"patchSignalsWithAllOptions",
		[]Effect{PatchSignals(json.RawMessage(`{"one":1,"two":2}`)).IfMissing()},
		"event: datastar-patch-signals\ndata: signals {\"two\": 2, \"one\": 1}\ndata: onlyIfMissing true\n\n"},
	{"patchSignalsWithDefaults",
		[]Effect{PatchSignals(json.RawMessage(`{"one":1,"two":2}`))},
		"event: datastar-patch-signals\ndata: signals {\"one\":1,\"two\":2}\n\n"},
	{"patchSignalsWithMultilineJson",
		[]Effect{PatchSignals(json.RawMessage("{\n\"one\": \"first signal\",\n\"two\":  \n\"second signal\"}"))},
		"event: datastar-patch-signals\ndata: signals {\ndata: signals \"one\": \"first signal\",\ndata: signals \"two\":  \ndata: signals \"second signal\"}\n\n"},
	{"patchSignalsWithMultilineSignals",
		[]Effect{mustSignals(map[string]string{"one": "first\n signal", "two": "second signal"})},
		"event: datastar-patch-signals\ndata: signals {\"one\":\"first\\n signal\",\"two\":\"second signal\"}\n\n"},
	{"patchSignalsWithoutDefaults",
		[]Effect{PatchSignals(json.RawMessage(`{"one":1,"two":2}`))},
		"event: datastar-patch-signals\ndata: signals {\"one\":1,\"two\":2}\n\n"},
	{"removeElementsWithAllOptions",
		[]Effect{RemoveElements("#target").WithViewTransition()},
		"event: datastar-patch-elements\ndata: mode remove\ndata: selector #target\ndata: useViewTransition true\n\n"},
	{"removeElementsWithDefaults",
		[]Effect{RemoveElements("#target")},
		"event: datastar-patch-elements\ndata: selector #target\ndata: mode remove\n\n"},
	{"removeElementsWithoutDefaults",
		[]Effect{RemoveElements("#target")},
		"event: datastar-patch-elements\ndata: mode remove\ndata: selector #target\n\n"},
	{"removeSignalsWithAllOptions",
		[]Effect{PatchSignals(json.RawMessage(`{"one":null,"two":{"alpha":null}}`))},
		"event: datastar-patch-signals\ndata: signals {\"one\":null,\"two\":{\"alpha\":null}}\n\n"},
	{"removeSignalsWithDefaults",
		[]Effect{PatchSignals(json.RawMessage(`{"one":null}`))},
		"event: datastar-patch-signals\ndata: signals {\"one\":null}\n\n"},
	{"sendTwoEvents",
		[]Effect{PatchElements("<div>Merge</div>"), PatchElements("<div>Merge 2</div>")},
		"event: datastar-patch-elements\ndata: elements <div>Merge</div>\n\nevent: datastar-patch-elements\ndata: elements <div>Merge 2</div>\n\n"},
	{"readSignalsFromBody",
		[]Effect{PatchElements("<div>Merge</div>")},
		"event: datastar-patch-elements\ndata: elements <div>Merge</div>\n\n"},

	// Beyond the suite.
	{"patchElementsInSVG",
		[]Effect{AppendElements("#chart", `<circle cx="5" cy="5" r="4"/>`).InNamespace(datastar.NamespaceSVG)},
		"event: datastar-patch-elements\ndata: selector #chart\ndata: mode append\ndata: namespace svg\ndata: elements <circle cx=\"5\" cy=\"5\" r=\"4\"/>\n\n"},
	{"patchElementsInMathML",
		[]Effect{PatchElements(`<mi id="x">x</mi>`).InNamespace(datastar.NamespaceMathML)},
		"event: datastar-patch-elements\ndata: namespace mathml\ndata: elements <mi id=\"x\">x</mi>\n\n"},
	{"patchElementsInHTMLSaysNothing",
		[]Effect{PatchElements(`<p id="x">x</p>`).InNamespace(datastar.NamespaceHTML)},
		"event: datastar-patch-elements\ndata: elements <p id=\"x\">x</p>\n\n"},
	{"scopedViewTransition",
		[]Effect{PatchElements(`<ul id="list"></ul>`).WithScopedViewTransition("#list")},
		"event: datastar-patch-elements\ndata: useViewTransition true\ndata: viewTransitionSelector #list\ndata: elements <ul id=\"list\"></ul>\n\n"},
}

func mustSignals(v any) Effect {
	e, err := MarshalSignals(v)
	if err != nil {
		panic(err)
	}
	return e
}

// Every case of Datastar's SDK conformance suite, as sfere expresses it,
// reaches a client over real TCP on both stream paths as the suite wants.
func TestDatastarSDKCases(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		for _, tc := range sdkCases {
			t.Run(tc.name, func(t *testing.T) {
				want, err := ssetest.Parse(strings.NewReader(tc.want))
				if err != nil {
					t.Fatal(err)
				}
				got := deliver(t, noHijack, tc.effects)
				if err := sameEvents(want, got); err != nil {
					t.Fatalf("%v\ngot:\n%s", err, eventsText(got))
				}
			})
		}
	})
}

// With DATASTAR_SDK_GOLDEN naming a copy of the suite's golden folder
// (sdk/tests/golden of the datastar repository, kept outside this one),
// every case in it is read, turned into effects, delivered on both paths
// and compared with its output.txt. It checks that sdkCases says what the
// suite says.
func TestDatastarSDKGoldenFiles(t *testing.T) {
	dir := os.Getenv("DATASTAR_SDK_GOLDEN")
	if dir == "" {
		t.Skip("DATASTAR_SDK_GOLDEN is not set (a copy of the datastar repository's sdk/tests/golden)")
	}
	inputs, err := filepath.Glob(filepath.Join(dir, "*", "*", "input.json"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no */*/input.json under %s (%v)", dir, err)
	}
	bothPaths(t, func(t *testing.T, noHijack bool) {
		for _, in := range inputs {
			t.Run(filepath.Base(filepath.Dir(in)), func(t *testing.T) {
				effects, err := goldenEffects(in)
				if err != nil {
					t.Fatal(err)
				}
				out, err := os.Open(filepath.Join(filepath.Dir(in), "output.txt"))
				if err != nil {
					t.Fatal(err)
				}
				defer out.Close()
				want, err := ssetest.Parse(out)
				if err != nil {
					t.Fatal(err)
				}
				for i := range want {
					want[i].HasID, want[i].ID, want[i].HasRetry, want[i].Retry = false, "", false, 0 // the hub's
				}
				if err := sameEvents(want, deliver(t, noHijack, effects)); err != nil {
					t.Fatal(err)
				}
			})
		}
	})
}

// goldenEffects reads a suite case's input.json into effects.
func goldenEffects(path string) ([]Effect, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var in struct {
		Events []struct {
			Type              string            `json:"type"`
			Elements          string            `json:"elements"`
			Selector          string            `json:"selector"`
			Mode              string            `json:"mode"`
			Namespace         string            `json:"namespace"`
			UseViewTransition bool              `json:"useViewTransition"`
			Signals           json.RawMessage   `json:"signals"`
			SignalsRaw        string            `json:"signals-raw"`
			OnlyIfMissing     bool              `json:"onlyIfMissing"`
			Script            string            `json:"script"`
			Attributes        map[string]string `json:"attributes"`
			AutoRemove        *bool             `json:"autoRemove"`
		} `json:"events"`
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var effects []Effect
	for _, ev := range in.Events {
		var e Effect
		switch ev.Type {
		case "patchElements":
			if ev.Mode == "remove" {
				e = RemoveElements(ev.Selector)
			} else {
				e = PatchElementsAt(ev.Selector, datastar.ElementPatchMode(ev.Mode), ev.Elements).InNamespace(datastar.Namespace(ev.Namespace))
			}
			if ev.UseViewTransition {
				e = e.WithViewTransition()
			}
		case "patchSignals":
			e = PatchSignals(cmpRaw(ev.Signals, ev.SignalsRaw))
			e.OnlyIfMissing = ev.OnlyIfMissing
		case "executeScript":
			e = ExecuteScript(ev.Script)
			for _, name := range slices.Sorted(func(yield func(string) bool) {
				for name := range ev.Attributes {
					if !yield(name) {
						return
					}
				}
			}) {
				e = e.WithAttributes(fmt.Sprintf("%s=%q", name, ev.Attributes[name]))
			}
			if ev.AutoRemove != nil && !*ev.AutoRemove {
				e = e.Kept()
			}
		default:
			return nil, fmt.Errorf("%s: event type %q is not one sfere has", path, ev.Type)
		}
		effects = append(effects, e)
	}
	return effects, nil
}

func cmpRaw(signals json.RawMessage, raw string) json.RawMessage {
	if raw != "" {
		return json.RawMessage(raw)
	}
	return signals
}

// deliver opens a stream whose initial effects are effects, ends it, and
// returns every event its client got over loopback TCP.
func deliver(t *testing.T, noHijack bool, effects []Effect) []ssetest.Event {
	t.Helper()
	hub, _ := newMemoryHub(t, HubOptions{NoHijack: noHijack})
	srv := testServer(t, hub, append(slices.Clone(effects), CloseStream())...)
	c := dial(t, srv, "sdk")
	c.WaitEnd(waitLong)
	return c.Events()
}

// sameEvents compares events field by field, as Datastar's runner does.
func sameEvents(want, got []ssetest.Event) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d events, want %d", len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if g.IsComment != w.IsComment || g.Comment != w.Comment || g.Type != w.Type ||
			g.HasID != w.HasID || g.ID != w.ID || g.HasRetry != w.HasRetry || g.Retry != w.Retry {
			return fmt.Errorf("event %d is\n%s\nwant\n%s", i, g, w)
		}
		wd, gd := dataGroups(w.Data), dataGroups(g.Data)
		if len(wd) != len(gd) {
			return fmt.Errorf("event %d has data %v, want %v", i, gd, wd)
		}
		for key, wv := range wd {
			gv, ok := gd[key]
			if !ok || !sameValue(key, wv, gv) {
				return fmt.Errorf("event %d: data %q is %q, want %q", i, key, gv, wv)
			}
		}
	}
	return nil
}

// dataGroups joins an event's data lines by their first word, as the
// client reads them: {"elements": "<div>\n</div>", "mode": "append"}.
func dataGroups(lines []string) map[string]string {
	groups := map[string]string{}
	for _, l := range lines {
		key, value, _ := strings.Cut(l, " ")
		if prev, ok := groups[key]; ok {
			value = prev + "\n" + value
		}
		groups[key] = value
	}
	return groups
}

// sameValue compares one data group: signals as JSON values, elements with
// attributes in any order, the rest as text.
func sameValue(key, want, got string) bool {
	switch key {
	case "signals":
		var w, g any
		return json.Unmarshal([]byte(want), &w) == nil && json.Unmarshal([]byte(got), &g) == nil && reflect.DeepEqual(w, g)
	case "elements":
		return sortedAttributes(want) == sortedAttributes(got)
	}
	return want == got
}

// sortedAttributes returns html with the attributes of every start tag
// sorted. It knows quoted values and nothing else of HTML: enough for
// the suite's cases and ours.
func sortedAttributes(html string) string {
	var b strings.Builder
	for {
		start := strings.IndexByte(html, '<')
		if start < 0 || start+1 >= len(html) || html[start+1] == '/' {
			if start < 0 {
				b.WriteString(html)
				return b.String()
			}
			b.WriteString(html[:start+1])
			html = html[start+1:]
			continue
		}
		end := tagEnd(html, start)
		if end < 0 {
			b.WriteString(html)
			return b.String()
		}
		b.WriteString(html[:start])
		fields := splitAttributes(html[start+1 : end])
		slices.Sort(fields[1:])
		b.WriteString("<" + strings.Join(fields, " ") + ">")
		html = html[end+1:]
	}
}

// tagEnd returns the index of the '>' that ends the tag starting at
// start, skipping quoted values, or -1.
func tagEnd(html string, start int) int {
	var quote byte
	for i := start + 1; i < len(html); i++ {
		switch c := html[i]; {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
		case c == '"' || c == '\'':
			quote = c
		case c == '>':
			return i
		}
	}
	return -1
}

// splitAttributes splits a tag's inside on spaces outside quotes.
func splitAttributes(tag string) []string {
	var (
		fields []string
		cur    strings.Builder
		quote  byte
	)
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
		case quote == 0 && c == ' ':
			if cur.Len() > 0 {
				fields = append(fields, cur.String())
				cur.Reset()
			}
			continue
		}
		cur.WriteByte(c)
	}
	if cur.Len() > 0 {
		fields = append(fields, cur.String())
	}
	return fields
}

func eventsText(events []ssetest.Event) string {
	var b strings.Builder
	for _, e := range events {
		b.WriteString(e.String())
		b.WriteString("\n\n")
	}
	return b.String()
}

// The comparison is no formality: what a client would read differently
// fails it.
func TestSDKComparisonTellsEventsApart(t *testing.T) {
	parse := func(s string) []ssetest.Event {
		t.Helper()
		events, err := ssetest.Parse(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return events
	}
	base := "event: datastar-patch-elements\ndata: selector #a\ndata: elements <p id=\"x\" class=\"y\">1</p>\n\n"
	if err := sameEvents(parse(base), parse("event: datastar-patch-elements\ndata: elements <p class=\"y\" id=\"x\">1</p>\ndata: selector #a\n\n")); err != nil {
		t.Fatalf("the same event in another order: %v", err)
	}
	for _, other := range []string{
		"event: datastar-patch-elements\ndata: selector #b\ndata: elements <p id=\"x\" class=\"y\">1</p>\n\n",
		"event: datastar-patch-elements\ndata: selector #a\ndata: elements <p id=\"x\" class=\"z\">1</p>\n\n",
		"event: datastar-patch-elements\ndata: selector #a\ndata: elements <p id=\"x\" class=\"y\">1</p>\ndata: useViewTransition true\n\n",
		"event: datastar-patch-elements\nid: 1\ndata: selector #a\ndata: elements <p id=\"x\" class=\"y\">1</p>\n\n",
		"event: datastar-patch-signals\ndata: selector #a\ndata: elements <p id=\"x\" class=\"y\">1</p>\n\n",
		base + base,
	} {
		if sameEvents(parse(base), parse(other)) == nil {
			t.Errorf("%q compared equal to %q", other, base)
		}
	}
	if !sameValue("signals", `{"a": 1, "b": [2]}`, `{"b":[2],"a":1}`) || sameValue("signals", `{"a":1}`, `{"a":2}`) {
		t.Error("signals are not compared as JSON values")
	}
}
