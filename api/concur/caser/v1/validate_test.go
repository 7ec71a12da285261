package caserv1_test

import (
	"slices"
	"testing"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	"github.com/concur-dev/concur/api/violation"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		req    interface{ Validate() error }
		fields []string
	}{
		{"line", &caserv1.SessionRequest{Line: "hello"}, nil},
		{"empty line", &caserv1.SessionRequest{}, nil},
		{"invalid line", &caserv1.SessionRequest{Line: "\xed\xa0\x80"}, []string{"line"}},
		{"case", &caserv1.CaseRequest{Text: "hello", Mode: caserv1.Mode_MODE_TITLE}, nil},
		{"case default mode", &caserv1.CaseRequest{Text: "hello"}, nil},
		{"unknown mode", &caserv1.CaseRequest{Text: "hello", Mode: 7}, []string{"mode"}},
		{"invalid text", &caserv1.CaseRequest{Text: "\xff", Mode: 9}, []string{"text", "mode"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.req.Validate()
			if got := violation.Fields(err); !slices.Equal(got, tt.fields) {
				t.Fatalf("Validate() = %v, fields %v; want fields %v", err, got, tt.fields)
			}
		})
	}
}
