package api_test

import (
	_ "embed"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/concur-dev/concur/api"
)

// edition2023 is `buf build` of the contracts as they were in edition 2023, before they moved
// to proto3 so that every protoc since 3.15 reads them.
//
//go:embed testdata/edition2023.binpb
var edition2023 []byte

// The proto3 contracts must be the edition-2023 ones on the wire and in JSON: every service
// method still there, the same; in every message the same fields with the same numbers, JSON
// names, types and presence; and any message, written by one and read by the other, the same
// JSON. Methods and messages added since (CounterService.Shards) are not in the image: buf
// breaking keeps them from one commit to the next.
// (buf breaking's WIRE_JSON rules do not compare presence, which decides whether a zero
// shows in JSON.)
func TestProto3ContractsMatchEdition2023(t *testing.T) {
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(edition2023, &set); err != nil {
		t.Fatal(err)
	}
	old, err := protodesc.NewFiles(&set)
	if err != nil {
		t.Fatal(err)
	}
	now, err := api.Descriptors()
	if err != nil {
		t.Fatal(err)
	}
	old.RangeFiles(func(was protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(was.Path(), "concur/") {
			return true
		}
		t.Run(was.Path(), func(t *testing.T) {
			is, err := now.FindFileByPath(was.Path())
			if err != nil {
				t.Fatal(err)
			}
			if is.Syntax() != protoreflect.Proto3 {
				t.Errorf("syntax %v, want proto3", is.Syntax())
			}
			kept := map[string]bool{}
			for _, m := range methods(is) {
				kept[m] = true
			}
			for _, m := range methods(was) {
				if !kept[m] {
					t.Errorf("method %s is gone or changed", m)
				}
			}
			for was, is := range pairs(t, was.Messages(), is.Messages()) {
				compareMessages(t, was, is)
			}
		})
		return true
	})
}

// pairs yields each message of was beside the message of the same name in is, nested ones
// included.
func pairs(t *testing.T, was, is protoreflect.MessageDescriptors) func(yield func(was, is protoreflect.MessageDescriptor) bool) {
	return func(yield func(was, is protoreflect.MessageDescriptor) bool) {
		for i := range was.Len() {
			w := was.Get(i)
			m := is.ByName(w.Name())
			if m == nil {
				t.Errorf("message %s is gone", w.FullName())
				continue
			}
			if !yield(w, m) {
				return
			}
			for w, m := range pairs(t, w.Messages(), m.Messages()) {
				if !yield(w, m) {
					return
				}
			}
		}
	}
}

func compareMessages(t *testing.T, was, is protoreflect.MessageDescriptor) {
	if w, i := fields(was), fields(is); w != i {
		t.Errorf("%s: fields differ:\nwas %s\nis  %s", was.FullName(), w, i)
		return
	}
	for _, zero := range []bool{true, false} {
		m := dynamicpb.NewMessage(is)
		fill(m, zero, 2)
		wire, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		back := dynamicpb.NewMessage(was)
		if err := proto.Unmarshal(wire, back); err != nil {
			t.Fatalf("%s: the edition-2023 contract cannot read the proto3 one's %x: %v", was.FullName(), wire, err)
		}
		if j, k := jsonOf(t, m), jsonOf(t, back); j != k {
			t.Errorf("%s (zero values %v): the same bytes read as\nproto3       %s\nedition 2023 %s", was.FullName(), zero, j, k)
		}
	}
}

// fields describes a message's fields as the wire and JSON see them.
func fields(m protoreflect.MessageDescriptor) string {
	var b strings.Builder
	for i := range m.Fields().Len() {
		f := m.Fields().Get(i)
		fmt.Fprintf(&b, "%d %s json=%s %v %v presence=%v", f.Number(), f.Name(), f.JSONName(), f.Cardinality(), f.Kind(), f.HasPresence())
		switch {
		case f.Message() != nil:
			fmt.Fprintf(&b, " %s", f.Message().FullName())
		case f.Enum() != nil:
			fmt.Fprintf(&b, " %s%s", f.Enum().FullName(), values(f.Enum()))
		}
		if o := f.ContainingOneof(); o != nil && !o.IsSynthetic() {
			fmt.Fprintf(&b, " oneof=%s", o.Name())
		}
		b.WriteString("; ")
	}
	return b.String()
}

func values(e protoreflect.EnumDescriptor) string {
	var b strings.Builder
	for i := range e.Values().Len() {
		fmt.Fprintf(&b, " %s=%d", e.Values().Get(i).Name(), e.Values().Get(i).Number())
	}
	return b.String()
}

// methods describes each method of a file's services: its name, its messages, its streams.
func methods(f protoreflect.FileDescriptor) []string {
	var ms []string
	for i := range f.Services().Len() {
		s := f.Services().Get(i)
		for j := range s.Methods().Len() {
			m := s.Methods().Get(j)
			ms = append(ms, fmt.Sprintf("%s/%s(%s stream=%v) %s stream=%v", s.FullName(), m.Name(), m.Input().FullName(), m.IsStreamingClient(), m.Output().FullName(), m.IsStreamingServer()))
		}
	}
	return ms
}

// fill sets every field of m, with zero values or not, down to depth nested messages; of a
// oneof, its last field.
func fill(m protoreflect.Message, zero bool, depth int) {
	fs := m.Descriptor().Fields()
	for i := range fs.Len() {
		f := fs.Get(i)
		switch {
		case f.IsMap():
		case f.IsList():
			if f.Message() == nil {
				m.Mutable(f).List().Append(scalar(f, zero))
			} else if depth > 0 {
				fill(m.Mutable(f).List().AppendMutable().Message(), zero, depth-1)
			}
		case f.Message() != nil:
			if depth > 0 {
				fill(m.Mutable(f).Message(), zero, depth-1)
			}
		default:
			m.Set(f, scalar(f, zero))
		}
	}
}

func scalar(f protoreflect.FieldDescriptor, zero bool) protoreflect.Value {
	n := 7
	if zero {
		n = 0
	}
	switch f.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(!zero)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(min(n, f.Enum().Values().Len()-1)))
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(strings.Repeat("s", n))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(strings.Repeat("b", n)))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(n))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(n))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(n))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(n))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(n))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(n))
	}
	panic(fmt.Sprintf("no value for %v", f.Kind()))
}

func jsonOf(t *testing.T, m proto.Message) string {
	b, err := protojson.MarshalOptions{Resolver: protoregistry.GlobalTypes}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
