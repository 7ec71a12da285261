package cluster

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/concur-dev/concur/internal/e2e"
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

// startEtcd starts the cluster and waits until it answers. It fails, never skips, without etcd.
func startEtcd(t *testing.T) *etcdCluster {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatal("etcd is missing: install Debian's etcd-server package (apt-get install etcd-server), as .ci/run does")
	}
	c := &etcdCluster{}
	var peers []string
	peerURLs := map[string]string{}
	for i := range 3 {
		name := fmt.Sprintf("etcd%d", i)
		peerURLs[name] = "http://" + e2e.FreeAddr(t)
		peers = append(peers, name+"="+peerURLs[name])
		c.members = append(c.members, &etcdMember{name: name, client: "http://" + e2e.FreeAddr(t), logs: &testkit.Buffer{}, done: make(chan struct{})})
	}
	for _, m := range c.members {
		m.cmd = exec.Command(bin, "--name="+m.name, "--data-dir="+t.TempDir(),
			"--listen-client-urls="+m.client, "--advertise-client-urls="+m.client,
			"--listen-peer-urls="+peerURLs[m.name], "--initial-advertise-peer-urls="+peerURLs[m.name],
			"--initial-cluster="+strings.Join(peers, ","), "--initial-cluster-state=new", "--initial-cluster-token=concur-test")
		m.cmd.Stdout, m.cmd.Stderr = m.logs, m.logs
		if err := m.cmd.Start(); err != nil {
			t.Fatalf("start etcd: %v", err)
		}
		go func() {
			m.cmd.Wait()
			close(m.done)
		}()
		t.Cleanup(func() {
			m.cmd.Process.Kill()
			<-m.done
			if t.Failed() {
				t.Logf("%s output:\n%s", m.name, m.logs.String())
			}
		})
	}
	c.client, err = clientv3.New(clientv3.Config{Endpoints: c.endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.client.Close() })
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		_, err := c.client.Put(ctx, "/concur/test/ready", "yes")
		cancel()
		if err == nil {
			return c
		}
		if t.Context().Err() != nil {
			t.Fatalf("etcd did not start: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
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
