package counter

import (
	"fmt"
	"strconv"
	"strings"
)

// The cluster's keys in etcd (docs/cluster.md).
const (
	clusterRoot = "/concur/counter/"
	clusterKey  = clusterRoot + "cluster"
	nodesPrefix = clusterRoot + "nodes/"
	ownerPrefix = clusterRoot + "owner/"
)

const (
	// shardBatch caps a shard owner's batch, and maxStreamIncrements a stream message in
	// cluster mode, so that a commit stays within etcd's default 128 operations a transaction:
	// at most shardBatch-1+maxStreamIncrements counters, the meta key, a batch key and a delete.
	shardBatch          = 64
	maxStreamIncrements = 60
)

func ownerKey(shard int) string    { return fmt.Sprintf("%s%03d", ownerPrefix, shard) }
func shardPrefix(shard int) string { return fmt.Sprintf("%sshard/%03d/", clusterRoot, shard) }

// shardOfKey is the shard an owner key names, or -1.
func shardOfKey(key string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(key, ownerPrefix))
	if err != nil {
		return -1
	}
	return n
}

// fairShare is how many shards the node self owns among nodes (sorted): an equal share, one
// more for the first shards%len(nodes) nodes. A node not among them owns none.
func fairShare(nodes []string, self string, shards int) int {
	for i, n := range nodes {
		if n == self {
			share := shards / len(nodes)
			if i < shards%len(nodes) {
				share++
			}
			return share
		}
	}
	return 0
}
