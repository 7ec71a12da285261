package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image holds and how it runs concurd.
const (
	binPath  = "/usr/local/bin/concurd"
	stateDir = "/var/lib/concur" // the one folder the user owns: the counter's default database
	user     = 65532             // the "nonroot" of distroless images: no name, no home, no root
	grpcPort = "50051"
)

// env is the image's environment: concurd listens on every interface, where a container's
// port can reach it (its own default is loopback), and the counter keeps its database in
// stateDir, for concurd's default lives in a home directory the image does not have.
var env = []string{
	"PATH=/usr/local/bin",
	"CONCUR_LISTEN=0.0.0.0:" + grpcPort,
	"CONCUR_COUNTER_DB=" + stateDir + "/counter",
}

// spec is what an image is made of besides the source.
type spec struct {
	arch    string    // GOARCH of the binary and of the image
	repo    string    // repository the image is tagged in
	created time.Time // the image's creation time and every file's modification time
}

// built is an image of concurd, the tag it carries, and the git revision concurd was built
// from, empty when go build did not stamp it.
type built struct {
	img      v1.Image
	tag      name.Tag
	revision string
}

// build compiles cmd/concurd and makes the image of it: one layer on an empty base, tagged
// with concurd's version. The same source and spec give the same image, byte for byte.
func build(ctx context.Context, s spec) (built, error) {
	dir, err := os.MkdirTemp("", "concur-image-")
	if err != nil {
		return built{}, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "concurd")
	// Static (no cgo, so no libc to ship), with no build paths in it, and with the version
	// stamped from git (this machine's GOFLAGS may say -buildvcs=false; the flag wins). -s -w
	// drop the symbol table and DWARF, a third of the size, which no one debugs in the image;
	// stack traces keep their names.
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=true", "-ldflags=-s -w",
		"-o", bin, "github.com/concur-dev/concur/cmd/concurd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+s.arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return built{}, fmt.Errorf("go build: %v\n%s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		return built{}, err
	}
	info, err := buildinfo.Read(bytes.NewReader(b))
	if err != nil {
		return built{}, fmt.Errorf("read concurd's build info: %w", err)
	}
	out := built{}
	for _, set := range info.Settings {
		if set.Key == "vcs.revision" {
			out.revision = set.Value
		}
	}
	if out.tag, err = name.NewTag(s.repo + ":" + tagOf(info.Main.Version)); err != nil {
		return built{}, err
	}
	labels := map[string]string{
		"org.opencontainers.image.title":   "concurd",
		"org.opencontainers.image.source":  "https://" + info.Main.Path,
		"org.opencontainers.image.version": info.Main.Version,
	}
	if out.revision != "" {
		labels["org.opencontainers.image.revision"] = out.revision
	}
	out.img, err = newImage(b, labels, s)
	return out, err
}

// tagOf turns a Go module version (v0.0.0-20261101120000-0123456789ab+dirty) into an image
// tag, which allows only letters, digits, '_', '.' and '-'.
func tagOf(version string) string {
	tag := strings.Map(func(r rune) rune {
		if r == '_' || r == '.' || r == '-' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			return r
		}
		return '-'
	}, version)
	return strings.Trim(tag, "-.")
}

// newImage puts the binary in an image: one layer, OCI media types, everything dated
// s.created.
func newImage(bin []byte, labels map[string]string, s spec) (v1.Image, error) {
	rootfs, err := layerTar(bin, s.created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(rootfs)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: s.created}, CreatedBy: "go run ./deploy/image", Comment: "concurd, static",
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: s.created}
	cf.OS, cf.Architecture = "linux", s.arch
	cf.Config = v1.Config{
		User:         fmt.Sprintf("%d:%d", user, user),
		Entrypoint:   []string{binPath},
		Env:          env,
		ExposedPorts: map[string]struct{}{grpcPort + "/tcp": {}},
		WorkingDir:   "/",
		Labels:       labels,
	}
	return mutate.ConfigFile(img, cf)
}

// layerTar is the image's file system: the binary and the state folder, with their parent
// folders, owned by root but for the state folder, all dated mtime.
func layerTar(bin []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entries := []tar.Header{
		{Name: "usr/", Mode: 0o755},
		{Name: "usr/local/", Mode: 0o755},
		{Name: "usr/local/bin/", Mode: 0o755},
		{Name: strings.TrimPrefix(binPath, "/"), Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg},
		{Name: "var/", Mode: 0o755},
		{Name: "var/lib/", Mode: 0o755},
		{Name: strings.TrimPrefix(stateDir, "/") + "/", Mode: 0o700, Uid: user, Gid: user},
	}
	for _, h := range entries {
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeDir
		}
		h.ModTime, h.Format = mtime, tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(bin); err != nil {
				return nil, err
			}
		}
	}
	err := tw.Close()
	return buf.Bytes(), err
}

// write puts the image in out: an OCI image layout in out/oci, which umoci, skopeo and
// podman read, and a docker-archive in out/concurd.tar, which docker load and podman load
// take. It replaces what an earlier run wrote there and returns the image's digest.
func write(out string, b built) (v1.Hash, error) {
	digest, err := b.img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	cf, err := b.img.ConfigFile()
	if err != nil {
		return v1.Hash{}, err
	}
	dir := filepath.Join(out, "oci")
	if err := os.RemoveAll(dir); err != nil {
		return v1.Hash{}, err
	}
	index := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: b.img, Descriptor: v1.Descriptor{
		Annotations: map[string]string{"org.opencontainers.image.ref.name": b.tag.TagStr()},
		Platform:    &v1.Platform{OS: cf.OS, Architecture: cf.Architecture},
	}})
	if _, err := layout.Write(dir, index); err != nil {
		return v1.Hash{}, fmt.Errorf("write the OCI layout: %w", err)
	}
	if err := tarball.WriteToFile(filepath.Join(out, "concurd.tar"), b.tag, b.img); err != nil {
		return v1.Hash{}, fmt.Errorf("write the docker-archive: %w", err)
	}
	return digest, nil
}
