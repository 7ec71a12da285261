package main

import (
	"slices"
	"strings"
	"testing"
)

func TestParseSites(t *testing.T) {
	got := parseSites("# the talk's list\nhttp://www.python.org\r\n\n  http://www.pypy.org  \n#http://www.perl.org\nhttps://www.yahoo.com/")
	if want := []string{"http://www.python.org", "http://www.pypy.org", "https://www.yahoo.com/"}; !slices.Equal(got, want) {
		t.Fatalf("parseSites = %q, want %q", got, want)
	}
}

// Every URL parseSites returns is a whole, trimmed, non-comment line of its input.
func FuzzParseSites(f *testing.F) {
	f.Add("# sites\nhttp://a.example/\n\n  http://b.example  \r\n")
	f.Fuzz(func(t *testing.T, text string) {
		urls := parseSites(text)
		lines := strings.Split(text, "\n")
		if len(urls) > len(lines) {
			t.Fatalf("%d URLs from %d lines", len(urls), len(lines))
		}
		for _, u := range urls {
			if u == "" || u != strings.TrimSpace(u) || strings.HasPrefix(u, "#") || strings.Contains(u, "\n") {
				t.Fatalf("parseSites(%q) returned %q", text, u)
			}
			if !slices.ContainsFunc(lines, func(l string) bool { return strings.TrimSpace(l) == u }) {
				t.Fatalf("%q is no line of %q", u, text)
			}
		}
	})
}
