package counterv1_test

import (
	"testing"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
)

// The values ShardsResponse's comment and docs/cluster.md promise, worked out by hand from
// FNV-1a's offset basis and prime, so that a client in another language can check its own.
func TestShardOf(t *testing.T) {
	for _, tt := range []struct {
		name   string
		shards int
		want   int
	}{
		{"default", 64, 30}, // 0x933b5bde % 64
		{"", 64, 30},        // the empty name is "default"
		{"default", 1, 0},   // an embedded counter: one shard
		{"apples", 64, fnv1a("apples") % 64},
		{"c042", 3, fnv1a("c042") % 3},
		{"héllo", 64, fnv1a("héllo") % 64}, // the UTF-8 bytes, not the runes
	} {
		if got := counterv1.ShardOf(tt.name, tt.shards); got != tt.want {
			t.Errorf("ShardOf(%q, %d) = %d, want %d", tt.name, tt.shards, got, tt.want)
		}
	}
}

// fnv1a is FNV-1a of s's bytes, written out.
func fnv1a(s string) int {
	h := uint32(2166136261)
	for i := range len(s) {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return int(h)
}
