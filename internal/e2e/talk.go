package e2e

import "testing"

// Talk returns the path of clients/talk built for this test run, with the race detector when
// the tests have it.
func Talk(t testing.TB) string {
	t.Helper()
	args := []string{"build"}
	if raceEnabled() {
		args = append(args, "-race")
	}
	return buildOnce(t, "talk", append(args, "./clients/talk")...)
}
