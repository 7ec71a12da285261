package readme_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/concur-dev/concur/test/readme"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		name string
		doc  string
		want []readme.Block
	}{
		{
			name: "commands, their output, the section and its concurd",
			doc: "# concur\n## The printer\nWith `go run ./cmd/concurd --printer-file=out.txt` running:\n\n" +
				"```console\n$ # a comment: it's not output\n$ grpcurl -plaintext localhost:50051 list\nfoo\n  bar\n$ cat out.txt\n$ grpcurl x\nERROR:\n```\n",
			want: []readme.Block{{
				Section: "The printer", Line: 5, Info: "console",
				Concurd: []string{"--printer-file=out.txt"},
				Commands: []readme.Command{
					{Line: 6, Text: "# a comment: it's not output"},
					{Line: 7, Text: "grpcurl -plaintext localhost:50051 list", Output: "foo\n  bar\n"},
					{Line: 10, Text: "cat out.txt"},
					{Line: 11, Text: "grpcurl x", Output: "ERROR:\n"},
				},
			}},
		},
		{
			name: "backslash continuation, a quote across lines, a heredoc",
			doc: "## S\n```console\n$ grpcurl -d '{\"a\": [1,\n    2]}' \\\n    localhost:50051 M\n{}\n" +
				"$ grpcurl -d @ localhost:50051 M <<'JSON'\n{\"a\": 1}\n$ not a prompt: heredoc\nJSON\nout\n```\n",
			want: []readme.Block{{
				Section: "S", Line: 2, Info: "console",
				Commands: []readme.Command{
					{Line: 3, Text: "grpcurl -d '{\"a\": [1,\n    2]}' \\\n    localhost:50051 M", Output: "{}\n"},
					{Line: 7, Text: "grpcurl -d @ localhost:50051 M <<'JSON'\n{\"a\": 1}\n$ not a prompt: heredoc\nJSON", Output: "out\n"},
				},
			}},
		},
		{
			name: "blocks without prompts are left out; the last concurd of the section counts, in code too",
			doc: "## A\n`go run ./cmd/concurd --x=1`\n```sh\npython3 -m http.server 8000 &\ngo run ./cmd/concurd --a=b --c\n```\n" +
				"```json\n{}\n```\n```console\n$ grpcurl\n```\n## B\n```console\n$ grpcurl\n```\n",
			want: []readme.Block{
				{Section: "A", Line: 10, Info: "console", Concurd: []string{"--a=b", "--c"}, Commands: []readme.Command{{Line: 11, Text: "grpcurl"}}},
				{Section: "B", Line: 14, Info: "console", Commands: []readme.Command{{Line: 15, Text: "grpcurl"}}},
			},
		},
		{
			name: "a client's session in a sh block",
			doc:  "```sh\n$ printf 'hi\\n' | go run ./clients/caser\nHI\n```\n",
			want: []readme.Block{{Line: 1, Info: "sh", Commands: []readme.Command{{Line: 2, Text: "printf 'hi\\n' | go run ./clients/caser", Output: "HI\n"}}}},
		},
		{name: "no blocks", doc: "grpcurl in prose is prose\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readme.Parse(tt.doc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestLinks(t *testing.T) {
	doc := "# T\nSee [a](a.md) and [b c](../b.md#x \"title\"),\n[a link over\ntwo lines](c/) and [u](https://x.org/a_(b)).\n" +
		"`[code](no.md)` and ``a ` [in](code.md)`` [f](f.md)\n```sh\n[in](fence.md)\n```\nA span over `two\n[lines](no.md)` then [d](#t)\n\n`open\n\n[e](e.md)\n"
	want := []readme.Link{{Line: 2, Target: "a.md"}, {Line: 2, Target: "../b.md#x"}, {Line: 3, Target: "c/"}, {Line: 5, Target: "f.md"}, {Line: 10, Target: "#t"}, {Line: 14, Target: "e.md"}}
	if got := readme.Links(doc); !reflect.DeepEqual(got, want) {
		t.Errorf("Links:\ngot  %+v\nwant %+v", got, want)
	}
}

func TestAnchors(t *testing.T) {
	doc := "# The caser: the talk's async sessions\n## With grpcurl\n```sh\n# a comment\n```\n## With grpcurl\n" +
		"### The `concur` CLI, step 1\n####### seven\n#no space\n## Ünïcode _x_ -- y\n"
	want := map[string]bool{"the-caser-the-talks-async-sessions": true, "with-grpcurl": true, "with-grpcurl-1": true,
		"the-concur-cli-step-1": true, "ünïcode-_x_----y": true}
	if got := readme.Anchors(doc); !reflect.DeepEqual(got, want) {
		t.Errorf("Anchors:\ngot  %v\nwant %v", got, want)
	}
}

// What would let a grpcurl example escape the test is an error.
func TestParseErrors(t *testing.T) {
	for _, tt := range []struct{ doc, says string }{
		{"```sh\ngrpcurl -plaintext localhost:50051 list\n```\n", `line 2: a grpcurl command without its "$ " prompt`},
		{"```console\n$ cat x\n  grpcurl localhost:50051 list\n```\n", `line 3: a grpcurl command without its "$ " prompt`},
		{"```sh\n$ grpcurl localhost:50051 list\n```\n", "line 1: a grpcurl session in a ```sh block"},
		{"```console\n$ grpcurl\n## Next\n```sh\n$ grpcurl\n```\n", "line 4: a fence opens inside the block opened at line 1"},
		{"```console\n$ grpcurl\n", "line 1: the block is never closed"},
		{"```console\n$ grpcurl -d '{\n```\n", "line 2: the command goes on after the end of its block"},
		{"```console\n$ grpcurl -d @ x <<EOF\n{}\n```\n", "line 2: the heredoc never ends with EOF"},
	} {
		if _, err := readme.Parse(tt.doc); err == nil || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("Parse(%q) = %v, want an error saying %q", tt.doc, err, tt.says)
		}
	}
}

// Whatever the document, Parse does not panic, and what it finds is where it says: each
// command starts on a prompt line and spans whole lines, each output is whole lines and
// holds no prompt, and from the first prompt on a block's commands and outputs follow each
// other line by line.
func FuzzParse(f *testing.F) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(doc))
	f.Add("## S\n```console\n$ grpcurl -d '{\"a\":\n1}' \\\n x <<'E'\n{}\nE\nout\n$ # it's\n```\n")
	f.Fuzz(func(t *testing.T, doc string) {
		blocks, err := readme.Parse(doc)
		if err != nil {
			return
		}
		lines := strings.Split(doc, "\n")
		for _, b := range blocks {
			if b.Line < 1 || b.Line > len(lines) || !strings.HasPrefix(lines[b.Line-1], "```") || len(b.Commands) == 0 {
				t.Fatalf("block %+v does not start on a fence", b)
			}
			next := b.Line + 1
			for i, c := range b.Commands {
				if c.Line < next || i > 0 && c.Line != next { // lines before the first prompt are no one's output
					t.Fatalf("command at line %d, want %d: %+v", c.Line, next, b)
				}
				text := strings.Split(c.Text, "\n")
				if first := lines[c.Line-1]; first != "$" && first != "$ "+text[0] {
					t.Fatalf("command %q does not start on its prompt line %q", c.Text, first)
				}
				for i, l := range text[1:] {
					if lines[c.Line+i] != l {
						t.Fatalf("command %q is not whole lines of the document", c.Text)
					}
				}
				next = c.Line + len(text)
				if c.Output != "" {
					if !strings.HasSuffix(c.Output, "\n") {
						t.Fatalf("output %q is not whole lines", c.Output)
					}
					out := strings.Split(strings.TrimSuffix(c.Output, "\n"), "\n")
					for i, l := range out {
						if lines[next-1+i] != l || strings.HasPrefix(l, "$ ") {
							t.Fatalf("output line %q is not line %d of the document, or is a prompt", l, next+i)
						}
					}
					next += len(out)
				}
			}
		}
	})
}
