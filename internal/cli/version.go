package cli

import (
	"fmt"
	"runtime/debug"
)

// Version describes the running binary from its build information: module path and
// version, VCS revision (marked dirty when built from a modified tree) and Go version.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown version (built without module support)"
	}
	rev, modified := "unknown", ""
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-dirty"
			}
		}
	}
	return fmt.Sprintf("%s %s (revision %s%s, %s)", bi.Main.Path, bi.Main.Version, rev, modified, bi.GoVersion)
}
