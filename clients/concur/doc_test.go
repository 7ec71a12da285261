package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/concur-dev/concur/internal/e2e"
)

// example is a command of docs/commands.md and the output it shows.
type example struct {
	command, output string
}

// shExamples reads the commands of the doc's sh blocks: a line "$ COMMAND", then what the
// command prints, standard output and error together, as a terminal shows them.
func shExamples(doc string) []example {
	var examples []example
	for _, block := range strings.Split(doc, "```sh\n")[1:] {
		block, _, _ = strings.Cut(block, "```\n")
		for line := range strings.Lines(block) {
			if command, ok := strings.CutPrefix(line, "$ "); ok {
				examples = append(examples, example{command: strings.TrimSuffix(command, "\n")})
			} else if len(examples) > 0 {
				examples[len(examples)-1].output += line
			}
		}
	}
	return examples
}

// The concur examples of docs/commands.md print what it shows, run in order through the
// shell against a concurd just started, as the doc says.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(e2e.Root(t), "docs", "commands.md"))
	if err != nil {
		t.Fatal(err)
	}
	examples := shExamples(string(doc))
	if len(examples) < 10 {
		t.Fatalf("%d examples in the sh blocks of docs/commands.md; want the concur examples", len(examples))
	}
	startConcurd(t)
	path := filepath.Dir(e2e.Build(t, "./clients/concur")) + string(filepath.ListSeparator) + os.Getenv("PATH")
	for _, ex := range examples {
		if !strings.HasPrefix(ex.command, "concur ") {
			t.Fatalf("docs/commands.md runs %q in an sh block: only concur's examples go there (use a text block)", ex.command)
		}
		cmd := exec.Command("sh", "-c", ex.command)
		cmd.Env = append(os.Environ(), "PATH="+path)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Run() // the exit status is the output's to show
		if out.String() != ex.output {
			t.Errorf("$ %s\nprints:\n%s\nthe doc shows:\n%s", ex.command, out.String(), ex.output)
		}
	}
}
