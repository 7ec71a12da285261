package counterv1_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/api/violation"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		req    interface{ Validate() error }
		fields []string
	}{
		{"talk's increment", &counterv1.IncrementRequest{}, nil},
		{"named with delta", &counterv1.IncrementRequest{Name: "hits", Delta: proto.Int64(-5), RequestId: "6f1c"}, nil},
		{"zero delta", &counterv1.IncrementRequest{Delta: proto.Int64(0)}, []string{"delta"}},
		{"long name", &counterv1.IncrementRequest{Name: strings.Repeat("n", 201)}, []string{"name"}},
		{"longest name", &counterv1.IncrementRequest{Name: strings.Repeat("n", 200)}, nil},
		{"control in name", &counterv1.IncrementRequest{Name: "a\nb"}, []string{"name"}},
		{"invalid utf8 name", &counterv1.IncrementRequest{Name: "\xff"}, []string{"name"}},
		{"long request id", &counterv1.IncrementRequest{RequestId: strings.Repeat("r", 129)}, []string{"request_id"}},
		{"empty batch", &counterv1.IncrementStreamRequest{}, []string{"increments"}},
		{"batch with bad item", &counterv1.IncrementStreamRequest{Increments: []*counterv1.CounterIncrement{
			{Name: "a"}, {Name: "b", Delta: proto.Int64(0)},
		}}, []string{"increments[1].delta"}},
		{"batch too large", &counterv1.IncrementStreamRequest{
			Increments: make([]*counterv1.CounterIncrement, counterv1.MaxIncrementsPerMessage+1),
		}, []string{"increments"}},
		{"get", &counterv1.GetRequest{Name: "x"}, nil},
		{"get bad", &counterv1.GetRequest{Name: "\x00"}, []string{"name"}},
		{"watch bad", &counterv1.WatchRequest{Name: "\xc3"}, []string{"name"}},
		{"join", &counterv1.JoinRequest{}, nil},
		{"shards", &counterv1.ShardsRequest{}, nil},
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

func TestNameOrDefault(t *testing.T) {
	if got := counterv1.NameOrDefault(""); got != "default" {
		t.Errorf(`NameOrDefault("") = %q`, got)
	}
	if got := counterv1.NameOrDefault("x"); got != "x" {
		t.Errorf(`NameOrDefault("x") = %q`, got)
	}
}

// FuzzIncrementRequestValidate checks that whatever Validate accepts is a name the service
// can store: at most MaxNameBytes of valid, printable UTF-8.
func FuzzIncrementRequestValidate(f *testing.F) {
	f.Add("default", int64(1), "id")
	f.Add("\xff", int64(0), "")
	f.Fuzz(func(t *testing.T, name string, delta int64, id string) {
		req := &counterv1.IncrementRequest{Name: name, Delta: &delta, RequestId: id}
		if req.Validate() != nil {
			return
		}
		var l violation.List
		l.Printable("name", name, counterv1.MaxNameBytes)
		l.Printable("request_id", id, counterv1.MaxRequestIDBytes)
		if l.Err() != nil || delta == 0 {
			t.Fatalf("Validate accepted name=%q delta=%d id=%q", name, delta, id)
		}
	})
}

// FuzzIncrementStreamRequestValidate checks that a batch reports exactly the faults its
// increments have on their own, each under its index.
func FuzzIncrementStreamRequestValidate(f *testing.F) {
	f.Add("a", int64(1), "\xff", int64(0))
	f.Add("", int64(0), strings.Repeat("n", 201), int64(-1))
	f.Fuzz(func(t *testing.T, name0 string, delta0 int64, name1 string, delta1 int64) {
		incs := []*counterv1.CounterIncrement{{Name: name0, Delta: &delta0}, {Name: name1, Delta: &delta1}}
		var want []string
		for i, inc := range incs {
			for _, f := range violation.Fields((&counterv1.IncrementRequest{Name: inc.Name, Delta: inc.Delta}).Validate()) {
				want = append(want, fmt.Sprintf("increments[%d].%s", i, f))
			}
		}
		got := violation.Fields((&counterv1.IncrementStreamRequest{Increments: incs}).Validate())
		if !slices.Equal(got, want) {
			t.Fatalf("fields %v, want %v", got, want)
		}
	})
}
