// Package readme reads the shell sessions of a Markdown document, so that a test can run the
// examples of the README and docs/ for real: the fenced code blocks whose lines start with a
// `$ ` prompt, each command with the lines shown after it as its output. It also reads a
// document's links and the anchors of its headings, so that a test can check where each
// link leads.
//
// A command is what bash reads: the prompt line, the lines it continues onto with a final
// backslash, and the body of its heredoc up to the terminator. Everything after it, up to the
// next prompt or the end of the block, is its output.
//
// Parse insists on one style for grpcurl, so that no grpcurl example can hide from the test:
// every line of a code block that starts with grpcurl must be a command behind a prompt, in
// a ```console block.
package readme

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Block is a fenced code block holding at least one prompt.
type Block struct {
	// Section is the title of the "## " heading the block is under.
	Section string
	// Line is the line of the opening fence, from 1.
	Line int
	// Info is the fence's info string: console, sh, ...
	Info     string
	Commands []Command
	// Concurd holds the flags of the last `go run ./cmd/concurd` the section mentions before
	// the block, in its text or its code.
	Concurd []string
}

// Command is one command of a session and the output the document shows for it.
type Command struct {
	// Line is the line of its prompt, from 1.
	Line int
	// Text is the command without its prompt: continuation lines and heredoc included,
	// joined by newlines.
	Text string
	// Output is the lines shown after it, each ending in a newline; empty when none is shown.
	Output string
}

// Program is the command's first word: "grpcurl", "cat", "#" for a comment.
func (c Command) Program() string {
	if strings.HasPrefix(c.Text, "#") {
		return "#"
	}
	fields := strings.Fields(c.Text)
	if len(fields) == 0 {
		return ""
	}
	return fields[0]
}

const prompt = "$ "

var (
	// concurdRun is a mention of concurd as a user starts it, with its flags.
	concurdRun = regexp.MustCompile("go run \\./cmd/concurd((?: +-[^\\s`]+)*)")
	// heredoc is the start of a heredoc: <<WORD, <<'WORD', <<"WORD", <<-WORD.
	heredoc = regexp.MustCompile(`<<-?\s*(?:'(\w+)'|"(\w+)"|(\w+))`)
)

// Parse returns the blocks of doc that hold a prompt, in order.
func Parse(doc string) ([]Block, error) {
	lines := strings.Split(doc, "\n")
	var (
		blocks  []Block
		section string
		concurd []string
	)
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if title, ok := strings.CutPrefix(line, "## "); ok {
			section, concurd = strings.TrimSpace(title), nil
			continue
		}
		if args, ok := lastConcurd(line); ok {
			concurd = args
		}
		info, ok := strings.CutPrefix(line, "```")
		if !ok {
			continue
		}
		open := i + 1
		end := open
		for ; end < len(lines) && strings.TrimSpace(lines[end]) != "```"; end++ {
			if strings.HasPrefix(lines[end], "```") {
				return nil, fmt.Errorf("line %d: a fence opens inside the block opened at line %d: is a closing fence missing?", end+1, open)
			}
		}
		if end == len(lines) {
			return nil, fmt.Errorf("line %d: the block is never closed", open)
		}
		b := Block{Section: section, Line: open, Info: strings.TrimSpace(info), Concurd: concurd}
		cmds, err := session(lines[open:end], open+1)
		if err != nil {
			return nil, err
		}
		for _, body := range lines[open:end] {
			if args, ok := lastConcurd(body); ok {
				concurd = args
			}
		}
		i = end
		if len(cmds) == 0 {
			continue
		}
		b.Commands = cmds
		for _, c := range cmds {
			if c.Program() == "grpcurl" && b.Info != "console" {
				return nil, fmt.Errorf("line %d: a grpcurl session in a ```%s block; open it with ```console", b.Line, b.Info)
			}
		}
		blocks = append(blocks, b)
	}
	return blocks, nil
}

// session splits the lines of a block, the first of which is line first of the document,
// into commands and their output.
func session(lines []string, first int) ([]Command, error) {
	var cmds []Command
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		text, isPrompt := strings.CutPrefix(line, prompt)
		if !isPrompt && line == strings.TrimSpace(prompt) {
			text, isPrompt = "", true
		}
		if !isPrompt {
			if isGrpcurl(line) {
				return nil, fmt.Errorf("line %d: a grpcurl command without its %q prompt: the test would not run it", first+i, prompt)
			}
			if len(cmds) > 0 {
				cmds[len(cmds)-1].Output += line + "\n"
			}
			continue
		}
		c := Command{Line: first + i, Text: text}
		for unfinished(c.Text) {
			i++
			if i == len(lines) {
				return nil, fmt.Errorf("line %d: the command goes on after the end of its block", c.Line)
			}
			c.Text += "\n" + lines[i]
		}
		if m := heredoc.FindStringSubmatch(c.Text); m != nil {
			word := m[1] + m[2] + m[3]
			for {
				i++
				if i == len(lines) {
					return nil, fmt.Errorf("line %d: the heredoc never ends with %s", c.Line, word)
				}
				c.Text += "\n" + lines[i]
				if strings.TrimSpace(lines[i]) == word {
					break
				}
			}
		}
		cmds = append(cmds, c)
	}
	return cmds, nil
}

// unfinished says whether bash reads on after text: it ends in a backslash, or a quote is
// still open.
func unfinished(text string) bool {
	var quote byte // 0, ' or "
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case c == '\\' && quote != '\'':
			if i == len(text)-1 {
				return true
			}
			i++
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '#' && (i == 0 || text[i-1] == ' ' || text[i-1] == '\t' || text[i-1] == '\n'):
			for i < len(text) && text[i] != '\n' {
				i++
			}
		}
	}
	return quote != 0
}

func isGrpcurl(line string) bool {
	fields := strings.Fields(line)
	return len(fields) > 0 && fields[0] == "grpcurl"
}

// lastConcurd returns the flags of the last mention of `go run ./cmd/concurd` in line.
func lastConcurd(line string) ([]string, bool) {
	all := concurdRun.FindAllStringSubmatch(line, -1)
	if all == nil {
		return nil, false
	}
	return strings.Fields(all[len(all)-1][1]), true
}

// Link is a Markdown link of a document, outside code: [text](Target).
type Link struct {
	// Line is the line of the link's opening bracket, from 1.
	Line int
	// Target is what the parentheses hold: a URL, or a path with an optional #fragment.
	Target string
}

var inlineLink = regexp.MustCompile(`\[[^\]]*\]\(([^()\s]+)(?:\s+"[^"]*")?\)`)

// Links returns the inline links of doc, in order, leaving out those in fenced code blocks
// and code spans. A link's text may run over several lines.
func Links(doc string) []Link {
	text := prose(doc)
	var links []Link
	for _, m := range inlineLink.FindAllStringSubmatchIndex(text, -1) {
		links = append(links, Link{Line: 1 + strings.Count(text[:m[0]], "\n"), Target: text[m[2]:m[3]]})
	}
	return links
}

// Anchors returns the anchors GitHub gives the headings of doc: the heading's text in lower
// case, without what is neither a letter, a digit, a space, a dash nor an underscore, spaces
// made dashes, and -1, -2, ... after a repeated one.
func Anchors(doc string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	lines := strings.Split(doc, "\n")
	fenced := fencedLines(lines)
	for i, line := range lines {
		hashes := len(line) - len(strings.TrimLeft(line, "#"))
		title, ok := strings.CutPrefix(line[hashes:], " ")
		if fenced[i] || hashes == 0 || hashes > 6 || !ok {
			continue
		}
		slug := slugify(strings.TrimSpace(title))
		if n := seen[slug]; n > 0 {
			anchors[slug+"-"+strconv.Itoa(n)] = true
		} else {
			anchors[slug] = true
		}
		seen[slug]++
	}
	return anchors
}

func slugify(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// fencedLines says of each line whether it is a fence or inside a fenced code block.
func fencedLines(lines []string) []bool {
	fenced := make([]bool, len(lines))
	in := false
	for i, line := range lines {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			in = !in
			fenced[i] = true
			continue
		}
		fenced[i] = in
	}
	return fenced
}

// prose is doc with the lines of fenced code blocks emptied and code spans blanked, so that
// what looks like a link in code is not taken for one. Lines stay where they are. A code span
// opens with a run of backticks and closes with a run as long; it may run over lines, but
// not over a blank line or a fence.
func prose(doc string) string {
	lines := strings.Split(doc, "\n")
	fenced := fencedLines(lines)
	span := 0 // the length of the run of backticks that opened the span; 0: none
	for i, line := range lines {
		if fenced[i] || strings.TrimSpace(line) == "" {
			span = 0
			if fenced[i] {
				lines[i] = ""
			}
			continue
		}
		b := []byte(line)
		for j := 0; j < len(b); {
			if b[j] != '`' {
				if span > 0 {
					b[j] = ' '
				}
				j++
				continue
			}
			run := j
			for j < len(b) && b[j] == '`' {
				b[j] = ' '
				j++
			}
			switch n := j - run; {
			case span == 0:
				span = n
			case span == n:
				span = 0
			}
		}
		lines[i] = string(b)
	}
	return strings.Join(lines, "\n")
}
