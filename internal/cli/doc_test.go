package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/concur-dev/concur/internal/e2e"
)

func TestMain(m *testing.M) { e2e.Main(m) }

// docs/commands.md shows what each binary's --help prints, word for word, and every line of
// it fits 80 columns.
func TestCommandsDocShowsEachHelp(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(e2e.Root(t), "docs", "commands.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]string{} // by binary, from its first line
	for _, block := range strings.Split(string(doc), "```text\n")[1:] {
		block, _, _ = strings.Cut(block, "```\n")
		if rest, ok := strings.CutPrefix(block, "Usage: "); ok {
			name, _, _ := strings.Cut(rest, " ")
			blocks[name] = block
		}
	}
	for _, pkg := range []string{"./cmd/concurd", "./clients/concur", "./clients/caser", "./clients/sitesize", "./clients/talk"} {
		name := filepath.Base(pkg)
		cmd := exec.Command(e2e.Build(t, pkg), "--help")
		// concurd's default database folder is under the home folder: the doc writes it ~.
		cmd.Env = append(os.Environ(), "HOME=~", "XDG_STATE_HOME=")
		help, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s --help: %v", name, err)
		}
		if blocks[name] != string(help) {
			t.Errorf("docs/commands.md shows for %s --help:\n%s\nit prints:\n%s", name, blocks[name], help)
		}
		for line := range strings.Lines(string(help)) {
			if len([]rune(strings.TrimSuffix(line, "\n"))) > width {
				t.Errorf("%s --help has a line wider than %d columns: %q", name, width, line)
			}
		}
	}
}
