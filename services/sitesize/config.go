package sitesize

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"time"
)

// Config is how the service fetches and what it allows. Every field has a flag
// (RegisterFlags), whose defaults are sane for a server open to anyone; a program that embeds
// the service may also set the fields itself, starting from those defaults.
type Config struct {
	// Workers bounds the fetches running at once across every batch (--sitesize-workers).
	Workers int
	// Concurrency is a batch's concurrency when its request leaves it at 0
	// (--sitesize-concurrency), and MaxConcurrency caps what a request may ask for
	// (--sitesize-max-concurrency).
	Concurrency    int
	MaxConcurrency int
	// Timeout is the time allowed for one URL when the request sets none
	// (--sitesize-timeout), and MaxTimeout caps what a request may ask for
	// (--sitesize-max-timeout).
	Timeout    time.Duration
	MaxTimeout time.Duration
	// MaxURLs and MaxURLBytes bound a batch: how many URLs, how long each
	// (--sitesize-max-urls, --sitesize-max-url-bytes).
	MaxURLs     int
	MaxURLBytes int
	// MaxBytes is the byte cap: counting stops there and the result is marked truncated
	// (--sitesize-max-bytes). A request may ask for less, never more.
	MaxBytes int64
	// MaxRedirects is how many redirects one URL may follow (--sitesize-max-redirects).
	MaxRedirects int
	// Allow lists the networks the address guard lets through although they are loopback,
	// private or otherwise special (--sitesize-allow), and AllowPorts the ports allowed
	// besides 80 and 443 (--sitesize-allow-ports).
	Allow      Prefixes
	AllowPorts Ports
}

// RegisterFlags defines the service's flags on fs, with their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.Workers, "sitesize-workers", 1000, "most fetches running at once across all batches; concurrent batches share them fairly")
	fs.IntVar(&c.Concurrency, "sitesize-concurrency", 10, "fetches running at once for a batch whose request asks for no concurrency")
	fs.IntVar(&c.MaxConcurrency, "sitesize-max-concurrency", 500, "most fetches running at once for one batch, whatever its request asks")
	fs.DurationVar(&c.Timeout, "sitesize-timeout", 10*time.Second, "time allowed for one URL, from dial to last byte, when the request sets none")
	fs.DurationVar(&c.MaxTimeout, "sitesize-max-timeout", time.Minute, "longest time allowed for one URL, whatever the request asks")
	fs.IntVar(&c.MaxURLs, "sitesize-max-urls", 10000, "most URLs in one batch")
	fs.IntVar(&c.MaxURLBytes, "sitesize-max-url-bytes", 8000, "longest URL, in bytes")
	fs.Int64Var(&c.MaxBytes, "sitesize-max-bytes", 128<<20, "byte cap: stop counting a body after this many `bytes` and mark it truncated")
	fs.IntVar(&c.MaxRedirects, "sitesize-max-redirects", 10, "most redirects followed for one URL")
	c.Allow, c.AllowPorts = nil, nil
	fs.Var(&c.Allow, "sitesize-allow", "comma-separated `CIDRs` (or addresses) to fetch from although loopback, private or otherwise special, such as 127.0.0.0/8; refused by default")
	fs.Var(&c.AllowPorts, "sitesize-allow-ports", "comma-separated `ports` or ranges (8080,9000-9099) to fetch from besides 80 and 443")
}

// check reports the first setting that cannot work, naming its flag.
func (c *Config) check() error {
	var errs []error
	positive := func(flag string, v int64) {
		if v < 1 {
			errs = append(errs, fmt.Errorf("--%s is %d; it must be at least 1", flag, v))
		}
	}
	positive("sitesize-workers", int64(c.Workers))
	positive("sitesize-concurrency", int64(c.Concurrency))
	positive("sitesize-max-concurrency", int64(c.MaxConcurrency))
	positive("sitesize-max-urls", int64(c.MaxURLs))
	positive("sitesize-max-url-bytes", int64(c.MaxURLBytes))
	positive("sitesize-max-bytes", c.MaxBytes)
	if c.MaxBytes == math.MaxInt64 {
		errs = append(errs, errors.New("--sitesize-max-bytes must be below 2^63-1"))
	}
	if c.MaxRedirects < 0 {
		errs = append(errs, fmt.Errorf("--sitesize-max-redirects is %d; it must not be negative", c.MaxRedirects))
	}
	if c.Timeout <= 0 || c.MaxTimeout <= 0 {
		errs = append(errs, errors.New("--sitesize-timeout and --sitesize-max-timeout must be positive"))
	}
	return errors.Join(errs...)
}
