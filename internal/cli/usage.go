package cli

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Group is a heading of --help and the flags under it. A flag goes to the group with the
// longest prefix of its name (a prefix may be a whole name), and failing any, to the group
// without prefixes, so that each flag is listed once and a new flag finds its place by its
// name.
type Group struct {
	Title    string
	Prefixes []string
}

// width is how wide --help is.
const width = 80

// Usage writes the command's help to w: its synopsis, what it does, its flags by group, the
// environment variables and the exit codes.
func (c *Command) Usage(w io.Writer) {
	synopsis := "Usage: " + c.Name + " [flags]"
	if c.Args != "" {
		synopsis += " " + c.Args
	}
	fmt.Fprintf(w, "%s\n", synopsis)
	for para := range strings.SplitSeq(strings.TrimSpace(c.About), "\n\n") {
		if para == "" {
			continue
		}
		if strings.HasPrefix(para, " ") || strings.Contains(para, "\n ") {
			fmt.Fprintf(w, "\n%s\n", para) // indented: a table, laid out by hand
		} else {
			fmt.Fprintf(w, "\n%s", wrap(para, ""))
		}
	}
	groups := c.Groups
	if !slices.ContainsFunc(groups, func(g Group) bool { return len(g.Prefixes) == 0 }) {
		groups = append(slices.Clip(groups), Group{Title: "Flags"}) // so that every flag has one
	}
	listed := make([][]*flag.Flag, len(groups))
	var first *flag.Flag // for the environment's example
	c.Flags.VisitAll(func(f *flag.Flag) {
		if c.parent != nil && c.parent.Flags.Lookup(f.Name) != nil && f.Name != "help" {
			return // the parent's flag: its help lists it
		}
		i := groupOf(groups, f.Name)
		listed[i] = append(listed[i], f)
		if first == nil && f.Name != "help" && f.Name != "version" {
			first = f
		}
	})
	for i, g := range groups {
		if len(listed[i]) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", g.Title)
		for _, f := range listed[i] {
			printFlag(w, f)
		}
	}
	if c.parent != nil {
		fmt.Fprintf(w, "\nThe flags of '%s --help' work here too.\n", c.parent.Name)
	} else if first != nil {
		fmt.Fprintf(w, "\nEnvironment:\n%s", wrap(fmt.Sprintf("Every flag but --help and --version can be set by an environment variable, CONCUR_ and the flag's name in upper case with dashes as underscores (%s is %s); a flag on the command line wins.", dashed(first.Name), EnvName(first.Name)), "  "))
	}
	if len(c.Exits) > 0 {
		fmt.Fprintf(w, "\nExit status:\n")
		for _, e := range c.Exits {
			fmt.Fprintf(w, "  %-4d %s\n", e.Code, e.Means)
		}
	}
}

// groupOf is the index of name's group: the one with its longest prefix, else the first
// without prefixes.
func groupOf(groups []Group, name string) int {
	best, longest := slices.IndexFunc(groups, func(g Group) bool { return len(g.Prefixes) == 0 }), 0
	for i, g := range groups {
		for _, p := range g.Prefixes {
			if strings.HasPrefix(name, p) && len(p) > longest {
				best, longest = i, len(p)
			}
		}
	}
	return best
}

// printFlag writes a flag as the flag package does, with two dashes and its usage wrapped.
func printFlag(w io.Writer, f *flag.Flag) {
	name, usage := flag.UnquoteUsage(f)
	line := "  " + dashed(f.Name)
	if name != "" {
		line += " " + name
	}
	if def := f.DefValue; !isZero(def) {
		if g, ok := f.Value.(flag.Getter); ok {
			if _, ok := g.Get().(string); ok {
				def = strconv.Quote(def)
			}
		}
		usage += " (default " + def + ")"
	}
	fmt.Fprintf(w, "%s\n%s", line, wrap(usage, "        "))
}

// isZero says whether a default goes without saying.
func isZero(def string) bool {
	switch def {
	case "", "0", "false", "0s":
		return true
	}
	return false
}

// wrap breaks text into lines of at most width columns, each starting with indent.
func wrap(text, indent string) string {
	var b strings.Builder
	line := indent
	for _, word := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += word
	}
	b.WriteString(line + "\n")
	return b.String()
}
