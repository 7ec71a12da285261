package counter

import (
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func commitOf(ops int) *commitReq {
	return &commitReq{ops: make([]clientv3.Op, ops), done: make(chan error, 1)}
}

// gather takes what waits, waits for more only while it holds fewer commits than the last
// transaction carried, and stops at a full transaction. No case depends on timing: the lingers
// are an hour, so a wait that should not happen hangs the test.
func TestCommitterGathers(t *testing.T) {
	const hour = time.Hour
	c := &committer{inbox: make(chan *commitReq, 200)}

	// A light load: the last transaction carried one commit, so nothing is waited for.
	first := commitOf(3)
	if got := c.gather([]*commitReq{first}, 1, hour); len(got) != 1 {
		t.Fatalf("gathered %d commits, want the 1 given", len(got))
	}

	// Commits that wait are all taken, without a wait.
	for range 4 {
		c.inbox <- commitOf(3)
	}
	if got := c.gather([]*commitReq{first}, 0, hour); len(got) != 5 {
		t.Fatalf("gathered %d commits, want the 1 given and the 4 waiting", len(got))
	}

	// The last transaction carried 3: the committer waits for the two that come later.
	go func() {
		for range 2 {
			c.inbox <- commitOf(3)
		}
	}()
	if got := c.gather([]*commitReq{first}, 3, hour); len(got) != 3 {
		t.Fatalf("gathered %d commits, want 3: the one given and the two that came", len(got))
	}

	// A full transaction ends the wait: two commits of 100 operations pass etcd's 128.
	c.inbox <- commitOf(100)
	c.inbox <- commitOf(100)
	if got := c.gather(nil, 10, hour); len(got) != 2 {
		t.Fatalf("gathered %d commits, want 2, whose operations fill a transaction", len(got))
	}
	if n := len(c.inbox); n != 0 {
		t.Fatalf("%d commits left waiting", n)
	}
}
