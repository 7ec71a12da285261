package sitesize

import (
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/concur-dev/concur/internal/jitter"
)

// NewWithResolver is New with the fetcher's names looked up by r, so that a test sees every
// lookup.
func NewWithResolver(c Config, r *net.Resolver, j jitter.Jitter, reg prometheus.Registerer) (*Service, error) {
	return newService(c, r, j, reg)
}
