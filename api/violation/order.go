package violation

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Sort puts l's violations in field order for a message described by md: by where their
// fields lie in the message (field number, then list index or map key, a parent before its
// children), so that "lines" comes before "lines[0]", "jobs[0].lines[1]" before "jobs[1]" and
// "jobs[1].source". The sort is stable: violations of one field keep the order they were
// added in, whichever check added them.
//
// A field is named by proto field names joined by dots, with [i] after a repeated field for
// its element i and [key] after a map field for its entry (a string key bare, or quoted as
// in Go when it holds a "]"). From the first part of a name that md does not know, or that
// does not parse, on, the violation sorts after every field md knows at that level.
func (l *List) Sort(md protoreflect.MessageDescriptor) {
	if len(l.violations) < 2 {
		return
	}
	type keyed struct {
		key []step
		v   *errdetails.BadRequest_FieldViolation
	}
	ks := make([]keyed, len(l.violations))
	for i, v := range l.violations {
		ks[i] = keyed{pathKey(md, v.GetField()), v}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int { return compareKeys(a.key, b.key) })
	for i, k := range ks {
		l.violations[i] = k.v
	}
}

// A step is one part of a field path's sort key: a field's number, a list index or a map key.
type step struct {
	// unknown marks a part that the descriptor does not know or that does not parse; the key
	// ends with it, so everything after it sorts alike.
	unknown bool
	// num is the field number, the list index, or an integer or bool map key, mapped so that
	// unsigned order is the key's order.
	num uint64
	key string // a string map key
}

func compareKeys(a, b []step) int {
	for i := range min(len(a), len(b)) {
		if c := compareSteps(a[i], b[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b)) // a parent before its children
}

func compareSteps(a, b step) int {
	if a.unknown || b.unknown {
		switch {
		case a.unknown && b.unknown:
			return 0
		case a.unknown:
			return 1
		}
		return -1
	}
	if c := cmp.Compare(a.num, b.num); c != 0 {
		return c
	}
	return strings.Compare(a.key, b.key)
}

// pathKey parses path as a field of a message described by md and returns its sort key.
func pathKey(md protoreflect.MessageDescriptor, path string) []step {
	var key []step
	unknown := func() []step { return append(key, step{unknown: true}) }
	for {
		end := strings.IndexAny(path, ".[")
		if end < 0 {
			end = len(path)
		}
		if md == nil {
			return unknown()
		}
		name := path[:end]
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			fd = md.Fields().ByJSONName(name)
		}
		if fd == nil {
			return unknown()
		}
		key = append(key, step{num: uint64(fd.Number())})
		path = path[end:]
		if path == "" {
			return key
		}
		elem := fd.Message() // the message under the field, or under one element or entry
		if path[0] == '[' {
			var s step
			var ok bool
			switch {
			case fd.IsList():
				s, path, ok = listIndex(path[1:])
			case fd.IsMap():
				s, path, ok = mapKey(fd.MapKey().Kind(), path[1:])
				elem = fd.MapValue().Message()
			}
			if !ok {
				return unknown()
			}
			key = append(key, s)
			if path == "" {
				return key
			}
		} else if fd.IsList() || fd.IsMap() {
			return unknown() // a field of a list or map with no element named
		}
		if path[0] != '.' {
			return unknown()
		}
		md, path = elem, path[1:]
	}
}

// listIndex parses "i]..." and returns i's step and what follows the bracket.
func listIndex(s string) (step, string, bool) {
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return step{}, "", false
	}
	i, err := strconv.ParseUint(s[:end], 10, 64)
	return step{num: i}, s[end+1:], err == nil
}

// mapKey parses "key]..." for a map whose keys are of kind k and returns the key's step and
// what follows the bracket.
func mapKey(k protoreflect.Kind, s string) (step, string, bool) {
	if k == protoreflect.StringKind && strings.HasPrefix(s, `"`) {
		quoted, err := strconv.QuotedPrefix(s)
		if err != nil || !strings.HasPrefix(s[len(quoted):], "]") {
			return step{}, "", false
		}
		key, err := strconv.Unquote(quoted)
		return step{key: key}, s[len(quoted)+1:], err == nil
	}
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return step{}, "", false
	}
	raw, s := s[:end], s[end+1:]
	switch k {
	case protoreflect.StringKind:
		return step{key: raw}, s, true
	case protoreflect.BoolKind:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return step{}, "", false
		}
		var n uint64
		if b {
			n = 1
		}
		return step{num: n}, s, true
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n, err := strconv.ParseUint(raw, 10, 64)
		return step{num: n}, s, err == nil
	default: // the signed integer kinds: flip the sign bit so that unsigned order is signed order
		n, err := strconv.ParseInt(raw, 10, 64)
		return step{num: uint64(n) ^ 1<<63}, s, err == nil
	}
}
