// Package readme reads the shell sessions of a Markdown document, so that a test can run the
// README's examples for real: the fenced code blocks whose lines start with a `$ ` prompt,
// each command with the lines shown after it as its output.
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
	"strings"
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
