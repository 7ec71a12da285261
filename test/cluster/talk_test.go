package cluster

import (
	"fmt"
	"net"
	"strings"
	"testing"

	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	"github.com/concur-dev/concur/internal/e2e"
)

// TestTalkAgainstNode: clients/talk --addr NODE passes against a node of a cluster that does
// not own the talk's counter: the talk reads the shard map from it and sends its increments
// to the owner, and its Join, a barrier over every shard, to the node it was given. The node
// serves the sitesize and the caser too; the printer, which every node forwards to, is its
// own process.
func TestTalkAgainstNode(t *testing.T) {
	c := &cluster{etcd: startEtcd(t)}
	printer := e2e.StartConcurd(t, "--services=printer", "--printer-stdout=false")
	demo := e2e.FreeAddr(t) // the talk serves its demo sites there, for the node's sitesize
	_, demoPort, err := net.SplitHostPort(demo)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		addr := e2e.FreeAddr(t)
		c.nodes = append(c.nodes, e2e.StartConcurd(t, "--services=counter,sitesize,caser", "--listen="+addr,
			"--counter-etcd="+strings.Join(c.etcd.endpoints(), ","), "--counter-advertise="+addr,
			"--counter-lease="+lease.String(), "--printer-addr="+printer.Addr,
			"--sitesize-allow=127.0.0.1", "--sitesize-allow-ports="+demoPort, "--caser-announce=300ms"))
	}
	waitFor(t, "every shard owned", func() bool { return c.free(t) == 0 })
	owner := c.owners(t)[fmt.Sprintf("/concur/counter/owner/%03d", shardOf(counterv1.DefaultName))]
	node := c.nodes[0]
	if node.Addr == owner {
		node = c.nodes[1]
	}

	stdout, _ := e2e.Run(t, "", e2e.Build(t, "./clients/talk"), "--addr="+node.Addr, "--printer-addr="+printer.Addr,
		"--demo-sites-listen="+demo, "--jitter=1ms")
	for _, want := range []string{
		"The printer wrote, read back with Tail (its jobs 1 to 12):\n" + e2e.TalkOutput(1, 10) + "\n",
		"Check passed: the counter counted 1 to 10",
		"Check passed: one result per URL, each carrying its URL, every size the page's size both ways.",
		"Check passed: user A switched to title case",
		"Every check passed: threading, sites, async.",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("no %q in the talk's output:\n%s", want, stdout)
		}
	}
}
