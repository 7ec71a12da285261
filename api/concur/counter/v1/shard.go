package counterv1

import "hash/fnv"

// ShardOf is the shard of the counter name on a counter cluster of the given number of shards,
// as ShardsResponse.shards documents it: FNV-1a (32 bits) of NameOrDefault(name), modulo
// shards. Nodes and clients share it, so that a client routes a call to the node that
// serves it.
func ShardOf(name string, shards int) int {
	h := fnv.New32a()
	h.Write([]byte(NameOrDefault(name)))
	return int(h.Sum32() % uint32(shards))
}
