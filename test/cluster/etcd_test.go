package cluster

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/concur-dev/concur/internal/testkit"
)

// etcdMember is one etcd server process of the test's cluster.
type etcdMember struct {
	name, client string
	cmd          *exec.Cmd
	logs         *testkit.Buffer
	done         chan struct{}
}

// etcdCluster is a three-member etcd cluster on loopback ports, from Debian's etcd-server.
type etcdCluster struct {
	members []*etcdMember
	client  *clientv3.Client
}

// startEtcd starts the cluster on loopback and waits until it answers. It fails, never
// skips, without etcd.
func startEtcd(t *testing.T) *etcdCluster {
	t.Helper()
	return startEtcdOn(t, "127.0.0.1")
}

func (c *etcdCluster) endpoints() []string {
	var e []string
	for _, m := range c.members {
		e = append(e, m.client)
	}
	return e
}

// leader is the member that leads the cluster now.
func (c *etcdCluster) leader(t *testing.T) *etcdMember {
	t.Helper()
	for _, m := range c.members {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		s, err := c.client.Status(ctx, m.client)
		cancel()
		if err == nil && s.Leader == s.Header.MemberId {
			return m
		}
	}
	t.Fatal("no etcd member says it leads")
	return nil
}

func (m *etcdMember) kill(t *testing.T) {
	t.Helper()
	if err := m.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-m.done
}
