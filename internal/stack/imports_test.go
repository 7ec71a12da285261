package stack_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/concur-dev/concur/"

// pkg is a package of the module as go list describes it, its tests left out: the rules are
// about what a program built from it contains.
type pkg struct {
	ImportPath string
	Imports    []string // direct
	Deps       []string // transitive
}

// The layering DESIGN.md forbids ("What must never be"), checked on the import graph, so
// that a service stays deployable on its own and the runtime stays out of it.
func TestImportRules(t *testing.T) {
	pkgs := list(t)
	if len(pkgs) == 0 {
		t.Fatal("go list found no package")
	}
	for _, p := range pkgs {
		path := strings.TrimPrefix(p.ImportPath, module)
		for _, rule := range []struct {
			applies bool
			deps    []string
			banned  func(dep string) bool
			why     string
		}{
			{
				applies: under(path, "services"),
				deps:    p.Deps,
				banned: func(d string) bool {
					return under(d, "internal/serve") || under(d, "internal/stack") || under(d, "clients")
				},
				why: "a service must not import the server runtime, the stack or a client",
			},
			{
				applies: under(path, "services"),
				deps:    p.Deps,
				banned:  func(d string) bool { return under(d, "services") && service(d) != service(path) },
				why:     "a service must not import another service; it reaches one through its generated client",
			},
			{
				applies: under(path, "api"),
				deps:    p.Deps,
				banned:  func(d string) bool { return !under(d, "api") },
				why:     "api/ must import nothing of ours outside api/",
			},
			{
				applies: under(path, "internal/serve"),
				deps:    p.Deps,
				banned:  func(d string) bool { return under(d, "services") },
				why:     "the server runtime must not know any service",
			},
			{
				applies: under(path, "clients"),
				deps:    p.Imports,
				banned:  func(d string) bool { return under(d, "services") },
				why:     "a client must not import a service (clients/talk reaches its stack through internal/stack)",
			},
		} {
			if !rule.applies {
				continue
			}
			for _, d := range rule.deps {
				if !strings.HasPrefix(d, module) {
					continue
				}
				if d = strings.TrimPrefix(d, module); rule.banned(d) {
					t.Errorf("%s imports %s: %s", path, d, rule.why)
				}
			}
		}
	}
}

// The rules catch what they are meant to.
func TestImportRuleHelpers(t *testing.T) {
	for _, tt := range []struct {
		path, dir string
		want      bool
	}{
		{"services/counter", "services", true},
		{"services", "services", true},
		{"servicesx/a", "services", false},
		{"internal/serve", "internal/serve", true},
		{"internal/server", "internal/serve", false},
	} {
		t.Run(tt.path+" under "+tt.dir, func(t *testing.T) {
			if got := under(tt.path, tt.dir); got != tt.want {
				t.Errorf("under(%q, %q) = %v, want %v", tt.path, tt.dir, got, tt.want)
			}
		})
	}
	for _, tt := range []struct{ path, want string }{
		{"services/caser", "caser"},
		{"services/caser/pycase", "caser"},
		{"services", ""},
	} {
		t.Run(tt.path, func(t *testing.T) {
			if got := service(tt.path); got != tt.want {
				t.Errorf("service(%q) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
}

// under reports whether path is dir or a package below it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// service is the name of the service whose tree path is in (services/caser/pycase: caser).
func service(path string) string {
	rest, ok := strings.CutPrefix(path, "services/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

// list runs go list on every package of the module.
func list(t *testing.T) []pkg {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", module+"...")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p pkg
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			return pkgs
		}
		if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
}
