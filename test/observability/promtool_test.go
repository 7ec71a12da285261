package observability

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/concur-dev/concur/internal/e2e"
)

// The alert rules pass promtool's checks, and its unit tests of them (rules_test.yaml) pass:
// each alert fires, and is held back, when it should.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is missing: install Debian's prometheus package (apt-get install prometheus), which .ci/run does")
	}
	dir := filepath.Join(e2e.Root(t), "deploy/prometheus")
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "rules_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
