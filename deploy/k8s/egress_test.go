package k8s

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// dest is where a pod connects: an address, or a pod with its namespace's labels.
type dest struct {
	addr           netip.Addr
	namespace, pod map[string]string
	protocol       corev1.Protocol
	port           int32
	allowed        bool // what the test wants
	why            string
}

// Sitesize's pods reach the internet on 80 and 443 and the cluster's DNS, and nothing of the
// cluster besides: not the pod and service ranges of common clusters (kubeadm and kind, EKS,
// GKE, k3s), not the other pods, not the cloud's metadata service.
func checkEgress(t *testing.T, o objects, workloads []workload) {
	t.Helper()
	internet4, internet6 := netip.MustParseAddr("93.184.215.14"), netip.MustParseAddr("2606:2800:21f:cb07:6820:80da:af6b:8b2c")
	kubeDNS := dest{namespace: map[string]string{"kubernetes.io/metadata.name": "kube-system"}, pod: map[string]string{"k8s-app": "kube-dns"}}
	for _, w := range workloads {
		if w.service != "sitesize" {
			continue
		}
		concur := map[string]string{"kubernetes.io/metadata.name": w.namespace}
		for _, d := range []dest{
			{addr: internet4, port: 443, allowed: true, why: "the internet, https"},
			{addr: internet4, port: 80, allowed: true, why: "the internet, http"},
			{addr: internet6, port: 443, allowed: true, why: "the internet over IPv6"},
			{addr: internet4, port: 25, why: "a port sitesize does not fetch from"},
			{namespace: kubeDNS.namespace, pod: kubeDNS.pod, protocol: corev1.ProtocolUDP, port: 53, allowed: true, why: "the cluster's DNS"},
			{namespace: kubeDNS.namespace, pod: kubeDNS.pod, port: 53, allowed: true, why: "the cluster's DNS over TCP"},
			{namespace: kubeDNS.namespace, pod: kubeDNS.pod, port: 443, why: "the DNS pods on another port"},
			{namespace: concur, pod: map[string]string{"app.kubernetes.io/component": "counter"}, port: 50051, why: "another pod"},
			{addr: netip.MustParseAddr("169.254.169.254"), port: 80, why: "the cloud metadata service"},
			{addr: netip.MustParseAddr("fd00:ec2::254"), port: 80, why: "the cloud metadata service over IPv6"},
			{addr: netip.MustParseAddr("10.96.0.1"), port: 443, why: "the API server's service address (kubeadm, kind)"},
			{addr: netip.MustParseAddr("10.244.1.7"), port: 80, why: "a pod address (kubeadm, kind)"},
			{addr: netip.MustParseAddr("172.20.0.1"), port: 443, why: "a service address (EKS)"},
			{addr: netip.MustParseAddr("10.43.0.1"), port: 443, why: "a service address (k3s)"},
			{addr: netip.MustParseAddr("192.168.1.1"), port: 80, why: "a private address"},
			{addr: netip.MustParseAddr("100.64.0.1"), port: 80, why: "a carrier-grade NAT address"},
			{addr: netip.MustParseAddr("127.0.0.1"), port: 80, why: "loopback"},
			{addr: netip.MustParseAddr("fe80::1"), port: 80, why: "an IPv6 link-local address"},
		} {
			if d.protocol == "" {
				d.protocol = corev1.ProtocolTCP
			}
			if got := egressAllowed(t, o.policies, w, d); got != d.allowed {
				t.Errorf("%s %s reaches %s (%v %v/%d): %v, want %v", w.kind, w.name, d.why, d.addr, d.protocol, d.port, got, d.allowed)
			}
		}
	}
}

// egressAllowed says whether the NetworkPolicies let w's pods reach d, as Kubernetes reads
// them: with no Egress policy selecting the pods, everything; else what any rule of any such
// policy allows.
func egressAllowed(t *testing.T, policies []*networkingv1.NetworkPolicy, w workload, d dest) bool {
	t.Helper()
	isolated := false
	for _, p := range policies {
		if p.Namespace != w.namespace || !matches(t, &p.Spec.PodSelector, w.template.Labels) || !hasEgress(p) {
			continue
		}
		isolated = true
		for _, r := range p.Spec.Egress {
			if toAllows(t, r.To, p.Namespace, d) && portsAllow(r.Ports, d) {
				return true
			}
		}
	}
	return !isolated
}

func hasEgress(p *networkingv1.NetworkPolicy) bool {
	for _, ty := range p.Spec.PolicyTypes {
		if ty == networkingv1.PolicyTypeEgress {
			return true
		}
	}
	return len(p.Spec.PolicyTypes) == 0 && len(p.Spec.Egress) > 0
}

func toAllows(t *testing.T, peers []networkingv1.NetworkPolicyPeer, namespace string, d dest) bool {
	t.Helper()
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		switch {
		case p.IPBlock != nil:
			if d.addr.IsValid() && inBlock(t, p.IPBlock, d.addr) {
				return true
			}
		case d.pod != nil:
			nsOK := d.namespace["kubernetes.io/metadata.name"] == namespace
			if p.NamespaceSelector != nil {
				nsOK = matches(t, p.NamespaceSelector, d.namespace)
			}
			if nsOK && (p.PodSelector == nil || matches(t, p.PodSelector, d.pod)) {
				return true
			}
		}
	}
	return false
}

func inBlock(t *testing.T, b *networkingv1.IPBlock, addr netip.Addr) bool {
	t.Helper()
	in := func(cidr string) bool {
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			t.Fatalf("ipBlock %q: %v", cidr, err)
		}
		return p.Contains(addr)
	}
	if !in(b.CIDR) {
		return false
	}
	for _, e := range b.Except {
		if in(e) {
			return false
		}
	}
	return true
}

func portsAllow(ports []networkingv1.NetworkPolicyPort, d dest) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if proto != d.protocol {
			continue
		}
		if p.Port == nil {
			return true
		}
		end := int32(p.Port.IntValue())
		if p.EndPort != nil {
			end = *p.EndPort
		}
		if int32(p.Port.IntValue()) <= d.port && d.port <= end {
			return true
		}
	}
	return false
}

// matches is a selector as NetworkPolicy reads it: an empty one selects everything.
func matches(t *testing.T, sel *metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return s.Matches(labels.Set(l))
}
