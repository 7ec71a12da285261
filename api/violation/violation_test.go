package violation_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
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

// described returns each violation of err as "field: description".
func described(err error) []string {
	var out []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out = append(out, v.GetField()+": "+v.GetDescription())
			}
		}
	}
	return out
}

func TestAddFromMergesAnotherList(t *testing.T) {
	var validate violation.List
	validate.Add("lines[1]", "holds a NUL")
	validate.Add("source", "is unprintable")
	var l violation.List
	l.Add("lines[0]", "is too long")
	if !l.AddFrom(validate.Err()) {
		t.Fatal("AddFrom took nothing from a BadRequest error")
	}
	want := []string{"lines[0]: is too long", "lines[1]: holds a NUL", "source: is unprintable"}
	if got := described(l.Err()); !slices.Equal(got, want) {
		t.Fatalf("merged %q, want %q", got, want)
	}
	for _, err := range []error{
		nil,
		fmt.Errorf("plain"),
		status.Error(codes.InvalidArgument, "no detail"),
		status.Error(codes.Internal, "other code"),
	} {
		var l violation.List
		if l.AddFrom(err) || l.Err() != nil {
			t.Errorf("AddFrom(%v) took violations from an error without any", err)
		}
	}
	st, _ := status.New(codes.FailedPrecondition, "not bad input").WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "x", Description: "y"}},
	})
	if l.AddFrom(st.Err()) {
		t.Error("AddFrom took violations from an error that is not INVALID_ARGUMENT")
	}
}
