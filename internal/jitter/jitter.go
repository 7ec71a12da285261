// Package jitter is the talk's fuzz(): a race amplifier. Owners and forwarders call Sleep
// between their steps; with a maximum set (--jitter), each call sleeps a random time up to
// it, so that goroutines interleave in orders that rarely happen on their own and an
// ordering bug shows up in a test instead of in production. The zero Jitter is off and costs
// one comparison.
package jitter

import (
	"math/rand/v2"
	"time"
)

// Jitter sleeps a random time up to its maximum on every Sleep.
type Jitter struct {
	max time.Duration
}

// New returns a Jitter that sleeps up to max; max <= 0 turns it off.
func New(max time.Duration) Jitter {
	return Jitter{max: max}
}

// On reports whether Sleep sleeps.
func (j Jitter) On() bool { return j.max > 0 }

// Sleep sleeps a random time in [0, max).
func (j Jitter) Sleep() {
	if j.max > 0 {
		time.Sleep(rand.N(j.max))
	}
}
