package violation_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/concur-dev/concur/api/violation"
)

func TestEmptyListIsNoError(t *testing.T) {
	var l violation.List
	l.Printable("name", "ok name", 10)
	l.Line("line", "a\tb")
	l.UTF8("text", "straße")
	if err := l.Err(); err != nil {
		t.Fatalf("Err() = %v, want nil", err)
	}
}

func TestErrCarriesEveryField(t *testing.T) {
	var l violation.List
	l.Printable("name", "a\x00b", 10)
	l.Printable("long", "abcdefghijk", 10)
	l.Line("lines[1]", "one\ntwo")
	l.Line("lines[2]", "\x1b[31mred")
	l.UTF8("text", "\xff")
	err := l.Err()
	if got := status.Code(err); got != codes.InvalidArgument {
		t.Fatalf("code = %v, want InvalidArgument", got)
	}
	want := []string{"name", "long", "lines[1]", "lines[2]", "text"}
	got := violation.Fields(err)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("fields = %v, want %v", got, want)
	}
	for _, f := range want {
		if !strings.Contains(status.Convert(err).Message(), f+": ") {
			t.Errorf("message %q does not name %s", status.Convert(err).Message(), f)
		}
	}
}

func TestLineAllowsTabOnly(t *testing.T) {
	for _, bad := range []string{"\r", "\n", "\x7f", "\u0085", "\x1b"} {
		var l violation.List
		l.Line("line", "x"+bad)
		if l.Err() == nil {
			t.Errorf("Line accepted %q", bad)
		}
	}
}
