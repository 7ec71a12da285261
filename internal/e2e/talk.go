package e2e

import "testing"

// Talk returns the path of clients/talk built for this test run, with the race detector when
// the tests have it.
func Talk(t testing.TB) string {
	t.Helper()
	return buildCommand(t, "talk", "./clients/talk")
}
