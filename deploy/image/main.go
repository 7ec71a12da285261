// Command image builds the container image of concurd with no Docker engine and no base
// image to pull: a static concurd on an empty base, run as user 65532 with no shell, serving
// on port 50051. The same source gives the same image, digest and all, on any machine with
// the same Go: every date in it is SOURCE_DATE_EPOCH, or 1970 when that is unset.
//
//	go run ./deploy/image -o DIR
//
// writes DIR/oci (an OCI image layout) and DIR/concurd.tar (a docker-archive, for docker
// load and podman load), tagged concurd:VERSION with concurd's version, and says the tag and
// the digest. See docs/deploy.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image", flag.ExitOnError)
	out := fs.String("o", "", "output `folder`; its oci/ and concurd.tar are replaced")
	s := spec{}
	fs.StringVar(&s.arch, "arch", runtime.GOARCH, "`GOARCH` of the image")
	fs.StringVar(&s.repo, "repo", "concurd", "`repository` of the image's tag")
	fs.Parse(args)
	if *out == "" || fs.NArg() > 0 {
		return errors.New("usage: go run ./deploy/image -o DIR [-arch GOARCH] [-repo NAME]")
	}
	var err error
	if s.created, err = sourceDate(); err != nil {
		return err
	}
	b, err := build(ctx, s)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	digest, err := write(*out, b)
	if err != nil {
		return err
	}
	fmt.Printf("%s\n  digest          %s\n  OCI layout      %s/oci\n  docker-archive  %s/concurd.tar\n", b.tag, digest, *out, *out)
	if b.revision == "" {
		fmt.Println("concurd's version is not stamped: go stamps it only when building in a git clone (not in a git worktree, not in an export)")
	}
	return nil
}

// sourceDate is SOURCE_DATE_EPOCH (reproducible-builds.org), or the Unix epoch.
func sourceDate() (time.Time, error) {
	v, ok := os.LookupEnv("SOURCE_DATE_EPOCH")
	if !ok {
		return time.Unix(0, 0).UTC(), nil
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970", v)
	}
	return time.Unix(sec, 0).UTC(), nil
}
