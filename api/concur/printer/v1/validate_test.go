package printerv1_test

import (
	"slices"
	"testing"
	"unicode"
	"unicode/utf8"

	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	"github.com/concur-dev/concur/api/violation"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		req    interface{ Validate() error }
		fields []string
	}{
		{"one line", &printerv1.PrintRequest{Lines: []string{"Starting up"}}, nil},
		{"tab and unicode", &printerv1.PrintRequest{Lines: []string{"a\tb", "straße ☃"}}, nil},
		{"with source", &printerv1.PrintRequest{Lines: []string{"x"}, Source: "counter", SourceSequence: 1}, nil},
		{"empty job", &printerv1.PrintRequest{}, []string{"lines"}},
		{"newline", &printerv1.PrintRequest{Lines: []string{"ok", "a\nb"}}, []string{"lines[1]"}},
		{"carriage return", &printerv1.PrintRequest{Lines: []string{"a\rb"}}, []string{"lines[0]"}},
		{"escape", &printerv1.PrintRequest{Lines: []string{"\x1b[2J"}}, []string{"lines[0]"}},
		{"invalid utf8", &printerv1.PrintRequest{Lines: []string{"\xc3\x28"}}, []string{"lines[0]"}},
		{"source without sequence", &printerv1.PrintRequest{Lines: []string{"x"}, Source: "s"}, []string{"source_sequence"}},
		{"sequence without source", &printerv1.PrintRequest{Lines: []string{"x"}, SourceSequence: 3}, []string{"source"}},
		{"unprintable source", &printerv1.PrintRequest{Lines: []string{"x"}, Source: "a\x01", SourceSequence: 1}, []string{"source"}},
		{"no jobs", &printerv1.PrintStreamRequest{}, []string{"jobs"}},
		{"bad second job", &printerv1.PrintStreamRequest{Jobs: []*printerv1.PrintJob{
			{Lines: []string{"fine"}}, {Lines: []string{"bad\n"}},
		}}, []string{"jobs[1].lines[0]"}},
		{"join", &printerv1.JoinRequest{}, nil},
		{"tail", &printerv1.TailRequest{FromSequence: 7}, nil},
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

// FuzzPrintRequestValidate checks Validate against an independent statement of the rule: a
// one-line job is accepted exactly when the line is valid UTF-8 with no control but tab.
func FuzzPrintRequestValidate(f *testing.F) {
	for _, s := range []string{"", "hello", "a\tb", "a\nb", "\xff", "\u0085", "☃"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		ok := utf8.ValidString(line)
		for _, r := range line {
			if r != '\t' && unicode.IsControl(r) {
				ok = false
			}
		}
		err := (&printerv1.PrintRequest{Lines: []string{line}}).Validate()
		if (err == nil) != ok {
			t.Fatalf("Validate(%q) = %v, want ok=%v", line, err, ok)
		}
	})
}
