package violation_test

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/concur-dev/concur/api/violation"
)

// testFile declares its fields out of number order, so that the tests tell number order from
// declaration order, and has a map of each kind of key.
const testFile = `
name: "violation_test.proto"
package: "violation.test"
syntax: "proto3"
message_type: {
  name: "Job"
  field: { name: "source" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING json_name: "source" }
  field: { name: "lines" number: 1 label: LABEL_REPEATED type: TYPE_STRING json_name: "lines" }
  field: { name: "source_sequence" number: 3 label: LABEL_OPTIONAL type: TYPE_UINT64 json_name: "sourceSequence" }
}
message_type: {
  name: "Request"
  field: { name: "name" number: 3 label: LABEL_OPTIONAL type: TYPE_STRING json_name: "name" }
  field: { name: "jobs" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".violation.test.Job" json_name: "jobs" }
  field: { name: "by_name" number: 2 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".violation.test.Request.ByNameEntry" json_name: "byName" }
  field: { name: "by_num" number: 4 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".violation.test.Request.ByNumEntry" json_name: "byNum" }
  field: { name: "by_flag" number: 5 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".violation.test.Request.ByFlagEntry" json_name: "byFlag" }
  field: { name: "by_id" number: 6 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".violation.test.Request.ByIdEntry" json_name: "byId" }
  field: { name: "main" number: 7 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".violation.test.Job" json_name: "main" }
  field: { name: "other" number: 9 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".violation.test.Job" json_name: "other" oneof_index: 0 }
  field: { name: "text" number: 8 label: LABEL_OPTIONAL type: TYPE_STRING json_name: "text" oneof_index: 0 }
  oneof_decl: { name: "choice" }
  nested_type: {
    name: "ByNameEntry"
    field: { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING json_name: "key" }
    field: { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".violation.test.Job" json_name: "value" }
    options: { map_entry: true }
  }
  nested_type: {
    name: "ByNumEntry"
    field: { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_SINT32 json_name: "key" }
    field: { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING json_name: "value" }
    options: { map_entry: true }
  }
  nested_type: {
    name: "ByFlagEntry"
    field: { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_BOOL json_name: "key" }
    field: { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".violation.test.Job" json_name: "value" }
    options: { map_entry: true }
  }
  nested_type: {
    name: "ByIdEntry"
    field: { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_FIXED64 json_name: "key" }
    field: { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING json_name: "value" }
    options: { map_entry: true }
  }
}
`

// request is the descriptor of violation.test.Request.
func request(t testing.TB) protoreflect.MessageDescriptor {
	t.Helper()
	var fdp descriptorpb.FileDescriptorProto
	if err := prototext.Unmarshal([]byte(testFile), &fdp); err != nil {
		t.Fatal(err)
	}
	fd, err := protodesc.NewFile(&fdp, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fd.Messages().ByName("Request")
}

// sorted adds fields to a list in the order given, sorts it by md and returns the fields.
func sorted(md protoreflect.MessageDescriptor, fields []string) []string {
	var l violation.List
	for _, f := range fields {
		l.Add(f, "is wrong")
	}
	l.Sort(md)
	return violation.Fields(l.Err())
}

// Each table lists paths in field order; every permutation tried sorts back to it.
func TestSortPutsFieldsInOrder(t *testing.T) {
	md := request(t)
	for _, want := range [][]string{
		// by number, not declaration; a parent before its children; indexes numerically
		{"jobs", "jobs[0]", "jobs[0].lines", "jobs[0].lines[1]", "jobs[0].lines[10]", "jobs[0].source", "jobs[1].source", "jobs[2]", "jobs[10].lines[0]", "name"},
		// the example, with a batch-level violation
		{"jobs", "jobs[0].lines[1]", "jobs[1].source"},
		// within a job: lines (1), source (2), source_sequence (3)
		{"main.lines", "main.lines[0]", "main.source", "main.source_sequence"},
		// string keys bare or quoted, by their bytes
		{"by_name", `by_name[""]`, "by_name[A]", `by_name["a"]`, "by_name[a].lines[0]", `by_name["a]b"]`, "by_name[b]"},
		// signed keys by value, negative first
		{"by_num[-10]", "by_num[-2]", "by_num[0]", "by_num[3]", "by_num[20]"},
		// bool keys false first, fixed64 keys as unsigned
		{"by_flag[false].source", "by_flag[true]", "by_id[1]", "by_id[9223372036854775808]", "by_id[18446744073709551615]"},
		// oneof members by number; JSON names are understood too
		{"text", "other.lines[2]", "other.sourceSequence"},
		// between fields, every field in number order
		{"jobs[0]", "by_name[x]", "name", "by_num[1]", "by_flag[true]", "by_id[2]", "main", "text", "other"},
	} {
		for _, order := range permutations(len(want)) {
			in := make([]string, len(want))
			for i, j := range order {
				in[i] = want[j]
			}
			if got := sorted(md, in); !slices.Equal(got, want) {
				t.Errorf("Sort(%q) = %q, want %q", in, got, want)
			}
		}
	}
}

// permutations returns a handful of orders of n items: as is, reversed, and rotations of
// both, which between them move every item before and after every other.
func permutations(n int) [][]int {
	var out [][]int
	for r := range n {
		fwd, back := make([]int, n), make([]int, n)
		for i := range n {
			fwd[i] = (i + r) % n
			back[i] = (2*n - 1 - i + r) % n
		}
		out = append(out, fwd, back)
	}
	return out
}

// Fields the descriptor does not know, and paths that do not parse, sort after every known
// field at their level, keeping the order they were added in.
func TestSortPutsUnknownFieldsLast(t *testing.T) {
	md := request(t)
	for _, tt := range []struct{ in, want []string }{
		{[]string{"zzz", "name", "aaa", "jobs"}, []string{"jobs", "name", "zzz", "aaa"}},
		{[]string{"jobs[0].nope", "jobs[0].lines", "jobs[1]"}, []string{"jobs[0].lines", "jobs[0].nope", "jobs[1]"}},
		// an index on a field that is not repeated, a name under a list with no index, a
		// key of the wrong kind, a name under a scalar, brackets that do not close
		{[]string{"name[0]", "jobs.lines", "by_num[x]", "name.x", "jobs[1", "by_name[\"a]", "name"}, []string{"jobs.lines", "jobs[1", "by_name[\"a]", "name", "name[0]", "name.x", "by_num[x]"}},
		{[]string{"", "jobs[-1]", "jobs[+1]", "jobs[0]x", "jobs[0]"}, []string{"jobs[0]", "jobs[0]x", "jobs[-1]", "jobs[+1]", ""}},
	} {
		t.Run(strings.Join(tt.in, ","), func(t *testing.T) {
			if got := sorted(md, tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("Sort(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// Two violations of one field keep the order they were added in, whichever came first.
func TestSortIsStable(t *testing.T) {
	md := request(t)
	var l violation.List
	l.Add("name", "second field, first check")
	l.Add("jobs[0].lines[0]", "is too long")
	l.Add("name", "second field, second check")
	l.Add("jobs[0].lines[0]", "holds a NUL")
	l.Sort(md)
	want := []string{
		"jobs[0].lines[0]: is too long",
		"jobs[0].lines[0]: holds a NUL",
		"name: second field, first check",
		"name: second field, second check",
	}
	if got := described(l.Err()); !slices.Equal(got, want) {
		t.Fatalf("sorted %q, want %q", got, want)
	}
	if msg := status.Convert(l.Err()).Message(); msg != "invalid request: "+strings.Join(want, "; ") {
		t.Fatalf("message %q does not list the violations in order", msg)
	}
}

// For any paths, the order Sort uses is a consistent order: every path equals itself, a
// before b exactly when b after a, it is transitive, and a path md knows all through comes
// before any path that goes on from it to a child.
func FuzzPathOrder(f *testing.F) {
	for _, seed := range [][3]string{
		{"jobs[0].lines[1]", "jobs[1].source", "[2]"},
		{"by_name[\"a]b\"]", "by_name[a]", ".lines[0]"},
		{"by_num[-3]", "by_num[3]", ".x"},
		{"by_id[18446744073709551615]", "by_flag[t]", "[0]"},
		{"other.sourceSequence", "text", "."},
		{"", "jobs[", "["},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	md := request(f)
	f.Fuzz(func(t *testing.T, a, b, suffix string) {
		for _, p := range []string{a, b, suffix} {
			if c := violation.ComparePaths(md, p, p); c != 0 {
				t.Fatalf("%q compares %d to itself", p, c)
			}
		}
		ab, ba := violation.ComparePaths(md, a, b), violation.ComparePaths(md, b, a)
		if ab != -ba {
			t.Fatalf("%q against %q is %d, the other way %d", a, b, ab, ba)
		}
		c := suffix
		if violation.ComparePaths(md, a, b) <= 0 && violation.ComparePaths(md, b, c) <= 0 && violation.ComparePaths(md, a, c) > 0 {
			t.Fatalf("%q <= %q <= %q, but %q > %q", a, b, c, a, c)
		}
		if violation.KnownPath(md, a) && suffix != "" && (suffix[0] == '.' || suffix[0] == '[') {
			if child := a + suffix; violation.ComparePaths(md, a, child) >= 0 {
				t.Fatalf("%q does not come before %q", a, child)
			}
		}
	})
}
