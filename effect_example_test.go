package sfere_test

import (
	"fmt"
	"strings"

	"github.com/sfere-go/sfere"
	"github.com/starfederation/datastar-go/datastar"
)

// Every option of Datastar 1.0 reads as a method on the effect it changes.
func ExampleEffect_WithViewTransition() {
	out, err := sfere.Render(
		sfere.RemoveElements("#participant-brian").WithViewTransition(),
		sfere.AppendElements("#chart", `<circle r="4"/>`).InNamespace(datastar.NamespaceSVG),
		sfere.ExecuteScript(`import("/app.js")`).WithAttributes(`type="module"`).Kept(),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	// Each event ends with a blank line (datastar-go writes two).
	for event := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n\n\n") {
		fmt.Printf("%s\n\n", event)
	}
	// Output:
	// event: datastar-patch-elements
	// data: selector #participant-brian
	// data: mode remove
	// data: useViewTransition true
	//
	// event: datastar-patch-elements
	// data: selector #chart
	// data: mode append
	// data: namespace svg
	// data: elements <circle r="4"/>
	//
	// event: datastar-patch-elements
	// data: selector body
	// data: mode append
	// data: elements <script type="module">import("/app.js")</script>
}
