package report

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
)

func TestLine(t *testing.T) {
	for _, tt := range []struct {
		r    *sitesizev1.MeasureResponse
		want string
	}{
		{&sitesizev1.MeasureResponse{Url: "http://a/", Size: proto.Int64(1024), Status: proto.Int32(200), Elapsed: durationpb.New(1234567 * time.Nanosecond)},
			"http://a/ 1024 200 1ms"},
		{&sitesizev1.MeasureResponse{Url: "http://b/", Size: proto.Int64(5), Status: proto.Int32(200), Truncated: true, Elapsed: durationpb.New(1234567890)},
			"http://b/ 5+ 200 1.23s"},
		{&sitesizev1.MeasureResponse{Url: "http://10.0.0.1/", Size: proto.Int64(0), Elapsed: durationpb.New(312400),
			Error: &sitesizev1.FetchError{Code: sitesizev1.FetchErrorCode_FETCH_ERROR_CODE_BLOCKED, Message: "not permitted"}},
			"http://10.0.0.1/ 0 - 312µs BLOCKED: not permitted"},
	} {
		if got := Line(tt.r); got != tt.want {
			t.Errorf("Line(%v) = %q, want %q", tt.r, got, tt.want)
		}
	}
}
