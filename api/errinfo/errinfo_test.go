package errinfo_test

import (
	"maps"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/concur-dev/concur/api/errinfo"
)

func TestNew(t *testing.T) {
	err := errinfo.New("concur.x.v1.XService", codes.ResourceExhausted, "QUEUE_FULL", map[string]string{"max": "3"}, "full: %d of %d", 3, 3)
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || st.Message() != "full: 3 of 3" {
		t.Fatalf("status %v %q", st.Code(), st.Message())
	}
	if len(st.Details()) != 1 {
		t.Fatalf("details %v, want one ErrorInfo", st.Details())
	}
	info, ok := st.Details()[0].(*errdetails.ErrorInfo)
	if !ok || info.GetDomain() != "concur.x.v1.XService" || info.GetReason() != "QUEUE_FULL" || !maps.Equal(info.GetMetadata(), map[string]string{"max": "3"}) {
		t.Fatalf("detail %v", st.Details()[0])
	}
}
