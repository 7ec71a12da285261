// Package violation builds the INVALID_ARGUMENT errors of the concur contracts: a gRPC status
// whose message lists every field at fault and whose google.rpc.BadRequest detail names them,
// so that a program can point at the field and a person can read what to change.
//
// It lives under api/ so that Go clients can run a request's Validate method before sending
// it; servers use it for the limits they set by flag, merging those violations with
// Validate's (AddFrom) and putting them all in field order (Sort).
package violation

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// List collects field violations. The zero value is an empty list, ready to use.
type List struct {
	violations []*errdetails.BadRequest_FieldViolation
}

// Add records that field breaks a rule; description says what to change.
func (l *List) Add(field, description string) {
	l.violations = append(l.violations, &errdetails.BadRequest_FieldViolation{Field: field, Description: description})
}

// Addf is Add with a formatted description.
func (l *List) Addf(field, format string, args ...any) {
	l.Add(field, fmt.Sprintf(format, args...))
}

// Err returns nil when nothing was added, else an INVALID_ARGUMENT status error carrying a
// google.rpc.BadRequest with every violation.
func (l *List) Err() error {
	if len(l.violations) == 0 {
		return nil
	}
	parts := make([]string, len(l.violations))
	for i, v := range l.violations {
		parts[i] = v.GetField() + ": " + v.GetDescription()
	}
	st := status.New(codes.InvalidArgument, "invalid request: "+strings.Join(parts, "; "))
	detailed, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: l.violations})
	if err != nil {
		return st.Err() // unreachable: BadRequest always marshals
	}
	return detailed.Err()
}

// AddFrom adds to l the violations that err carries, in their order, and reports whether it
// carries any: err must be an INVALID_ARGUMENT status error with a google.rpc.BadRequest
// detail, such as a request's Validate returns. It lets a server merge what Validate found
// with what its own checks find into one error.
func (l *List) AddFrom(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		return false
	}
	n := len(l.violations)
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			l.violations = append(l.violations, br.GetFieldViolations()...)
		}
	}
	return len(l.violations) > n
}

// Fields returns the fields named by the BadRequest detail of err, in order; none when err
// carries no such detail.
func Fields(err error) []string {
	var fields []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return fields
}

// Printable checks a name-like field: valid UTF-8, at most maxBytes bytes, and only printable
// characters (letters, marks, numbers, punctuation, symbols and the ASCII space). An empty
// value passes: callers decide whether the field is required.
func (l *List) Printable(field, s string, maxBytes int) {
	switch {
	case !utf8.ValidString(s):
		l.Add(field, "must be valid UTF-8")
	case len(s) > maxBytes:
		l.Addf(field, "is %d bytes long; at most %d bytes are allowed", len(s), maxBytes)
	default:
		for i, r := range s {
			if !unicode.IsPrint(r) {
				l.Addf(field, "holds the unprintable character %U at byte %d", r, i)
				return
			}
		}
	}
}

// Line checks a line of text meant for a terminal: valid UTF-8 and no control character but
// tab, so that no newline splits it and no escape sequence passes through.
func (l *List) Line(field, s string) {
	if !utf8.ValidString(s) {
		l.Add(field, "must be valid UTF-8")
		return
	}
	for i, r := range s {
		if r != '\t' && unicode.IsControl(r) {
			l.Addf(field, "holds the control character %U at byte %d; only tab is allowed", r, i)
			return
		}
	}
}

// UTF8 checks that a free-text field is valid UTF-8.
func (l *List) UTF8(field, s string) {
	if !utf8.ValidString(s) {
		l.Add(field, "must be valid UTF-8")
	}
}
