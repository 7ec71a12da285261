// Package errinfo builds the errors of the concur contracts beyond INVALID_ARGUMENT (which
// package violation builds): a gRPC status whose google.rpc.ErrorInfo detail carries a reason
// and metadata, so that a program can act on them without parsing the message.
package errinfo

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// New is a status error of code with the formatted message and an ErrorInfo of domain (the
// service's full name), reason and meta.
func New(domain string, code codes.Code, reason string, meta map[string]string, format string, args ...any) error {
	st := status.Newf(code, format, args...)
	detailed, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: domain, Metadata: meta})
	if err != nil {
		return st.Err() // unreachable: ErrorInfo always marshals
	}
	return detailed.Err()
}
