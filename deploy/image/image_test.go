package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// testSpec dates the image on a day of its own, so that a date left to a default shows.
var testSpec = spec{arch: runtime.GOARCH, repo: "concurd", created: time.Unix(1_700_000_000, 0).UTC()}

var (
	outRoot string // removed by TestMain
	once    sync.Once
	first   struct {
		b      built
		dir    string
		digest v1.Hash
		err    error
	}
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "concur-image-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	outRoot = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// image builds the image once for the test binary and writes it to a folder of its own.
func image(t *testing.T) (built, string, v1.Hash) {
	t.Helper()
	once.Do(func() {
		first.dir = filepath.Join(outRoot, "first")
		if first.b, first.err = build(context.Background(), testSpec); first.err == nil {
			first.digest, first.err = write(first.dir, first.b)
		}
	})
	if first.err != nil {
		t.Fatal(first.err)
	}
	return first.b, first.dir, first.digest
}

// The same source gives the same image twice: the same digest, and the same bytes in the
// OCI layout's index and in the docker-archive.
func TestReproducible(t *testing.T) {
	b1, dir1, digest1 := image(t)
	b2, err := build(context.Background(), testSpec)
	if err != nil {
		t.Fatal(err)
	}
	dir2 := filepath.Join(outRoot, "second")
	digest2, err := write(dir2, b2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s %s", b1.tag, digest1)
	if digest1 != digest2 || b1.tag != b2.tag {
		t.Fatalf("two builds differ: %s %s, then %s %s", b1.tag, digest1, b2.tag, digest2)
	}
	for _, f := range []string{"oci/index.json", "concurd.tar"} {
		a, errA := os.ReadFile(filepath.Join(dir1, f))
		b, errB := os.ReadFile(filepath.Join(dir2, f))
		if err := errors.Join(errA, errB); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds", f)
		}
	}
}

// The OCI layout holds the image under its tag, made as the issue asks: one layer with the
// binary and the state folder and nothing else (no shell), every date the spec's, user
// 65532, entrypoint concurd, port 50051 and CONCUR_LISTEN on every interface. The
// docker-archive holds the same config and layer under the full tag.
func TestImage(t *testing.T) {
	b, dir, digest := image(t)
	img := fromLayout(t, filepath.Join(dir, "oci"), b.tag.TagStr())
	if d, err := img.Digest(); err != nil || d != digest {
		t.Fatalf("layout's image digest %v, %v; want %v", d, err, digest)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if !cf.Created.Time.Equal(testSpec.created) || cf.OS != "linux" || cf.Architecture != testSpec.arch {
		t.Errorf("created %v, platform %s/%s; want %v, linux/%s", cf.Created, cf.OS, cf.Architecture, testSpec.created, testSpec.arch)
	}
	if c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/concurd"}) || len(c.Cmd) != 0 {
		t.Errorf("user %q, entrypoint %q, cmd %q", c.User, c.Entrypoint, c.Cmd)
	}
	if _, ok := c.ExposedPorts["50051/tcp"]; !ok || len(c.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v, want 50051/tcp", c.ExposedPorts)
	}
	if !slices.Contains(c.Env, "CONCUR_LISTEN=0.0.0.0:50051") {
		t.Errorf("env %q lacks CONCUR_LISTEN=0.0.0.0:50051", c.Env)
	}
	for _, h := range cf.History {
		if !h.Created.Time.Equal(testSpec.created) {
			t.Errorf("history %+v is not dated %v", h, testSpec.created)
		}
	}

	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d, %v; want 1", len(layers), err)
	}
	files, bin := readLayer(t, layers[0])
	want := []string{
		"usr/ dir 0:0 0755", "usr/local/ dir 0:0 0755", "usr/local/bin/ dir 0:0 0755", "usr/local/bin/concurd file 0:0 0755",
		"var/ dir 0:0 0755", "var/lib/ dir 0:0 0755", "var/lib/concur/ dir 65532:65532 0700",
	}
	if !slices.Equal(files, want) {
		t.Errorf("layer holds\n%s\nwant\n%s", strings.Join(files, "\n"), strings.Join(want, "\n"))
	}
	checkBinary(t, bin, b, cf.Config.Labels)

	archive := filepath.Join(dir, "concurd.tar")
	fromArchive, err := tarball.ImageFromPath(archive, &b.tag)
	if err != nil {
		t.Fatalf("docker-archive has no image %s: %v", b.tag, err)
	}
	sameBlobs(t, img, fromArchive)
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(archive) })
	if err != nil || len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{"concurd:" + b.tag.TagStr()}) {
		t.Errorf("docker-archive manifest %+v, %v; want one image tagged %s", m, err, b.tag)
	}
}

// checkBinary checks that concurd is static, built as the image's build says, and that its
// version is the image's tag; built in a git clone, that it names its revision.
func checkBinary(t *testing.T, bin []byte, b built, labels map[string]string) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("concurd is dynamically linked (program header %v)", p.Type)
		}
	}
	info, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" || settings["GOOS"] != "linux" {
		t.Errorf("build settings %v, want CGO_ENABLED=0 -trimpath=true GOOS=linux", settings)
	}
	if !slices.ContainsFunc(info.Deps, func(m *debug.Module) bool { return m.Path == "golang.org/x/crypto/x509roots/fallback" }) {
		t.Error("concurd does not embed the CA roots (golang.org/x/crypto/x509roots/fallback)")
	}
	if tag := tagOf(info.Main.Version); b.tag.TagStr() != tag || labels["org.opencontainers.image.version"] != info.Main.Version {
		t.Errorf("tag %s, version label %q; concurd's version is %s", b.tag, labels["org.opencontainers.image.version"], info.Main.Version)
	}
	if labels["org.opencontainers.image.revision"] != settings["vcs.revision"] || b.revision != settings["vcs.revision"] {
		t.Errorf("revision label %q, built %q; concurd's vcs.revision is %q", labels["org.opencontainers.image.revision"], b.revision, settings["vcs.revision"])
	}
	// go build stamps the version only where .git is a folder: a git worktree has a file.
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(strings.TrimSpace(string(root)), ".git")); err == nil && fi.IsDir() && b.revision == "" {
		t.Error("built in a git clone, concurd's version has no revision")
	}
}

func fromLayout(t *testing.T, dir, ref string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == ref {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no image named %s in the layout: %+v", ref, m.Manifests)
	return nil
}

// readLayer lists a layer's entries (name, type, owner, mode) and returns the binary; it
// fails the test on an entry not dated testSpec.created.
func readLayer(t *testing.T, l v1.Layer) (files []string, bin []byte) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, bin
		}
		if err != nil {
			t.Fatal(err)
		}
		kind := map[byte]string{tar.TypeDir: "dir", tar.TypeReg: "file"}[h.Typeflag]
		files = append(files, fmt.Sprintf("%s %s %d:%d %04o", h.Name, kind, h.Uid, h.Gid, h.Mode))
		if !h.ModTime.Equal(testSpec.created) {
			t.Errorf("%s is dated %v, want %v", h.Name, h.ModTime, testSpec.created)
		}
		if h.Name == "usr/local/bin/concurd" {
			if bin, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// sameBlobs fails the test unless a and b have the same config and layers.
func sameBlobs(t *testing.T, a, b v1.Image) {
	t.Helper()
	digests := func(img v1.Image) []v1.Hash {
		cfg, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		out := []v1.Hash{cfg}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, d)
		}
		return out
	}
	if da, db := digests(a), digests(b); !slices.Equal(da, db) {
		t.Errorf("config and layers differ: %v and %v", da, db)
	}
}

func TestTagOf(t *testing.T) {
	for version, want := range map[string]string{
		"v1.2.3": "v1.2.3",
		"v0.0.0-20261101120000-0123456789ab+dirty": "v0.0.0-20261101120000-0123456789ab-dirty",
		"(devel)": "devel",
	} {
		if got := tagOf(version); got != want {
			t.Errorf("tagOf(%q) = %q, want %q", version, got, want)
		}
		if _, err := name.NewTag("concurd:" + tagOf(version)); err != nil {
			t.Errorf("tagOf(%q): %v", version, err)
		}
	}
}

func TestSourceDate(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	if d, err := sourceDate(); err != nil || !d.Equal(time.Unix(1_700_000_000, 0)) {
		t.Errorf("SOURCE_DATE_EPOCH=1700000000: %v, %v", d, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if _, err := sourceDate(); err == nil {
		t.Error("SOURCE_DATE_EPOCH=yesterday: no error")
	}
	os.Unsetenv("SOURCE_DATE_EPOCH")
	if d, err := sourceDate(); err != nil || d.Unix() != 0 {
		t.Errorf("no SOURCE_DATE_EPOCH: %v, %v; want the Unix epoch", d, err)
	}
}
