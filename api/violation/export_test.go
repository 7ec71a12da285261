package violation

import "google.golang.org/protobuf/reflect/protoreflect"

// ComparePaths compares field paths a and b of a message described by md as Sort does.
func ComparePaths(md protoreflect.MessageDescriptor, a, b string) int {
	return compareKeys(pathKey(md, a), pathKey(md, b))
}

// KnownPath reports whether md knows every part of path.
func KnownPath(md protoreflect.MessageDescriptor, path string) bool {
	for _, s := range pathKey(md, path) {
		if s.unknown {
			return false
		}
	}
	return true
}
