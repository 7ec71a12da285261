package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/concur-dev/concur/internal/e2e"
	"github.com/concur-dev/concur/internal/testkit"
)

// netns is a network namespace joined to the host by a veth pair on a /30 of its own: the
// host's end has the address host, the namespace's end ns. Taking the host's end down cuts
// the processes in the namespace off from everything on the host, silently, as a partition does.
type netns struct {
	ip, name, hostDev string
	host, ns          string
}

var netnsSeq atomic.Int64

// newNetns makes the namespace and its link, and removes them at the end of the test, failed
// or not. It fails, never skips, without ip.
func newNetns(t *testing.T) *netns {
	t.Helper()
	bin, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal("ip is missing: install Debian's iproute2 package (apt-get install iproute2), as .ci/run does")
	}
	// Unique names and subnet, for the runs of -count and for other test processes.
	id := fmt.Sprintf("%d%d", os.Getpid()%100000, netnsSeq.Add(1))
	n := &netns{ip: bin, name: "concur-part-" + id, hostDev: "ccp" + id + "h"}
	nsDev := "ccp" + id + "n"
	var subnet string
	for {
		base := fmt.Sprintf("10.213.%d.%d", rand.IntN(256), 4*rand.IntN(64))
		subnet = base + "/30"
		if strings.TrimSpace(n.run(t, "-4", "route", "show", "to", "exact", subnet)) == "" {
			ip := net.ParseIP(base).To4()
			n.host = net.IPv4(ip[0], ip[1], ip[2], ip[3]+1).String()
			n.ns = net.IPv4(ip[0], ip[1], ip[2], ip[3]+2).String()
			break
		}
	}
	n.run(t, "netns", "add", n.name)
	t.Cleanup(func() { n.cleanup(t, "netns", "del", n.name) })
	n.run(t, "link", "add", n.hostDev, "type", "veth", "peer", "name", nsDev, "netns", n.name)
	t.Cleanup(func() { n.cleanup(t, "link", "del", n.hostDev) })
	n.run(t, "addr", "add", n.host+"/30", "dev", n.hostDev)
	n.run(t, "link", "set", n.hostDev, "up")
	n.run(t, "-n", n.name, "addr", "add", n.ns+"/30", "dev", nsDev)
	n.run(t, "-n", n.name, "link", "set", nsDev, "up")
	n.run(t, "-n", n.name, "link", "set", "lo", "up")
	// While the host's end is down, its route to the subnet is gone: without this one the
	// host's packets to the namespace would leave by the default route instead of going nowhere.
	n.run(t, "route", "add", "blackhole", subnet, "metric", "1000")
	t.Cleanup(func() { n.cleanup(t, "route", "del", "blackhole", subnet, "metric", "1000") })
	return n
}

func (n *netns) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(n.ip, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// cleanup undoes a step of newNetns; what it cannot undo is left to the next one, and said.
func (n *netns) cleanup(t *testing.T, args ...string) {
	if out, err := exec.Command(n.ip, args...).CombinedOutput(); err != nil {
		t.Errorf("cleanup: ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// partition cuts the namespace off; heal joins it again.
func (n *netns) partition(t *testing.T) { n.run(t, "link", "set", n.hostDev, "down") }
func (n *netns) heal(t *testing.T)      { n.run(t, "link", "set", n.hostDev, "up") }

// startConcurd starts concurd in the namespace, as e2e.StartConcurd does on the host.
func (n *netns) startConcurd(t *testing.T, args ...string) *e2e.Process {
	t.Helper()
	return e2e.Start(t, n.ip, append([]string{"netns", "exec", n.name, e2e.Concurd(t), "--log-format=json"}, args...)...)
}

// freeAddrOn is e2e.FreeAddr on the host's address ip.
func freeAddrOn(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startEtcdOn starts the cluster with the members' client URLs on address ip (the host's
// end of a veth, so that a process in a namespace reaches them) and waits until it answers.
// It fails, never skips, without etcd.
func startEtcdOn(t *testing.T, ip string) *etcdCluster {
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
		c.members = append(c.members, &etcdMember{name: name, client: "http://" + freeAddrOn(t, ip), logs: &testkit.Buffer{}, done: make(chan struct{})})
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
	waitFor(t, "etcd to start", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := c.client.Put(ctx, "/concur/test/ready", "yes")
		return err == nil
	})
	return c
}

// waitFor waits until cond holds, failing the test after two minutes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited two minutes for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
