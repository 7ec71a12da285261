package e2e

import (
	"fmt"
	"strings"
)

// TalkOutput is what the talk's right way prints for the counts first to last: the output a
// test expects from the printer after the talk's workers.
func TalkOutput(first, last int) string {
	var b strings.Builder
	b.WriteString("Starting up\n")
	for n := first; n <= last; n++ {
		fmt.Fprintf(&b, "The count is %d\n---------------\n", n)
	}
	b.WriteString("Finishing up\n")
	return b.String()
}
