// Package k8s proves the Kubernetes manifests offline: every overlay is rendered as
// kubectl apply -k renders it, each object is decoded strictly into the Kubernetes API's
// types, and each container's arguments and environment are parsed by concurd's own flags,
// so that no manifest can carry a flag concurd refuses or a field the API server drops.
package k8s

import (
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	caserv1 "github.com/concur-dev/concur/api/concur/caser/v1"
	counterv1 "github.com/concur-dev/concur/api/concur/counter/v1"
	printerv1 "github.com/concur-dev/concur/api/concur/printer/v1"
	sitesizev1 "github.com/concur-dev/concur/api/concur/sitesize/v1"
	"github.com/concur-dev/concur/internal/cli"
	"github.com/concur-dev/concur/internal/stack"
	"github.com/concur-dev/concur/services/counter"
)

// healthNames are the names concurd reports each service's health under.
var healthNames = map[string]string{
	"printer":  printerv1.PrinterService_ServiceDesc.ServiceName,
	"counter":  counterv1.CounterService_ServiceDesc.ServiceName,
	"sitesize": sitesizev1.SiteSizeService_ServiceDesc.ServiceName,
	"caser":    caserv1.CaserService_ServiceDesc.ServiceName,
}

// imageEnv is the environment the image (deploy/image) gives concurd, under the container's.
var imageEnv = map[string]string{"CONCUR_LISTEN": "0.0.0.0:50051", "CONCUR_COUNTER_DB": "/var/lib/concur/counter"}

// stateful are the services whose owner keeps state on disk: one replica, with a volume.
var stateful = []string{"printer", "counter"}

// objects is one overlay rendered and decoded.
type objects struct {
	namespaces   []*corev1.Namespace
	services     []*corev1.Service
	statefulSets []*appsv1.StatefulSet
	deployments  []*appsv1.Deployment
	autoscalers  []*autoscalingv2.HorizontalPodAutoscaler
	budgets      []*policyv1.PodDisruptionBudget
	policies     []*networkingv1.NetworkPolicy
}

// workload is a StatefulSet or a Deployment, and the one service its pods run.
type workload struct {
	kind, name, namespace, service string
	selector                       *metav1.LabelSelector
	template                       *corev1.PodTemplateSpec
	cfg                            stack.Config
}

func TestOverlays(t *testing.T) {
	if len(healthNames) != len(stack.Names) {
		t.Fatalf("healthNames knows %d services, concurd runs %d: %v", len(healthNames), len(stack.Names), stack.Names)
	}
	dirs, err := filepath.Glob("overlays/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no overlay: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			o := render(t, dir)
			workloads := o.workloads(t)
			if len(workloads) == 0 {
				t.Fatal("no workload")
			}
			for _, w := range workloads {
				checkPod(t, w)
				checkScaling(t, o, w)
			}
			checkServices(t, o, workloads)
			checkPrinterAddr(t, o, workloads)
			checkEgress(t, o, workloads)
		})
	}
}

// render builds an overlay with kustomize, as kubectl apply -k does, and decodes every
// object strictly: a field the type does not have fails the test.
func render(t *testing.T, dir string) objects {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var o objects
	for _, r := range m.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		var obj any
		switch gvk := r.GetGvk(); gvk.ApiVersion() + " " + gvk.Kind {
		case "v1 Namespace":
			obj = appendNew(&o.namespaces)
		case "v1 Service":
			obj = appendNew(&o.services)
		case "apps/v1 StatefulSet":
			obj = appendNew(&o.statefulSets)
		case "apps/v1 Deployment":
			obj = appendNew(&o.deployments)
		case "autoscaling/v2 HorizontalPodAutoscaler":
			obj = appendNew(&o.autoscalers)
		case "policy/v1 PodDisruptionBudget":
			obj = appendNew(&o.budgets)
		case "networking.k8s.io/v1 NetworkPolicy":
			obj = appendNew(&o.policies)
		default:
			t.Fatalf("%s %s: a kind this test does not know", gvk.ApiVersion(), r.CurId())
		}
		if err := yaml.UnmarshalStrict(b, obj); err != nil {
			t.Errorf("%s: %v", r.CurId(), err)
		}
	}
	return o
}

// appendNew appends a new zero object to list and returns it.
func appendNew[T any](list *[]*T) *T {
	v := new(T)
	*list = append(*list, v)
	return v
}

// workloads lists the StatefulSets and Deployments with the flags of their one container,
// parsed as concurd parses them, and checks that each runs exactly one service.
func (o objects) workloads(t *testing.T) []workload {
	var out []workload
	for _, s := range o.statefulSets {
		out = append(out, workload{kind: "StatefulSet", name: s.Name, namespace: s.Namespace, selector: s.Spec.Selector, template: &s.Spec.Template})
	}
	for _, d := range o.deployments {
		out = append(out, workload{kind: "Deployment", name: d.Name, namespace: d.Namespace, selector: d.Spec.Selector, template: &d.Spec.Template})
	}
	for i := range out {
		w := &out[i]
		if n := len(w.template.Spec.Containers); n != 1 {
			t.Fatalf("%s %s has %d containers, want concurd alone", w.kind, w.name, n)
		}
		w.cfg = concurdFlags(t, w.template.Spec.Containers[0])
		if len(w.cfg.Services) != 1 {
			t.Fatalf("%s %s runs %v: one service per pod", w.kind, w.name, w.cfg.Services)
		}
		w.service = w.cfg.Services[0]
		if !selects(t, w.selector, w.template.Labels) {
			t.Errorf("%s %s: selector %v does not match its pods' labels %v", w.kind, w.name, w.selector, w.template.Labels)
		}
	}
	return out
}

// concurdFlags parses a container's arguments and environment, over the image's, with
// concurd's flags and its parser (cli's, which reads the CONCUR_ variables and refuses stray
// arguments). concurd would
// ignore a CONCUR_ variable that names no flag: here it fails, as a stray argument does.
func concurdFlags(t *testing.T, c corev1.Container) stack.Config {
	t.Helper()
	if len(c.Command) > 0 {
		t.Errorf("container %s replaces the image's entrypoint with %q", c.Name, c.Command)
	}
	if repo, _, _ := strings.Cut(c.Image, ":"); repo != "concurd" {
		t.Errorf("container %s runs image %q, not the one deploy/image builds (concurd)", c.Name, c.Image)
	}
	cmd := cli.New("concurd", io.Discard, io.Discard)
	var cfg stack.Config
	cfg.RegisterFlags(cmd.Flags)
	flags := map[string]bool{}
	cmd.Flags.VisitAll(func(f *flag.Flag) { flags[cli.EnvName(f.Name)] = true })

	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "CONCUR_") {
			t.Setenv(name, "") // restored at the end of the test
			os.Unsetenv(name)
		}
	}
	for name, v := range imageEnv {
		t.Setenv(name, v)
	}
	for _, e := range c.Env {
		if !strings.HasPrefix(e.Name, "CONCUR_") {
			continue
		}
		if !flags[e.Name] || e.ValueFrom != nil {
			t.Errorf("container %s: %s is not a concurd flag's variable with a value", c.Name, e.Name)
		}
		t.Setenv(e.Name, e.Value)
	}
	if err := cmd.Parse(c.Args); err != nil {
		t.Fatalf("container %s: concurd refuses %q with its environment: %v", c.Name, c.Args, err)
	}
	if _, err := cfg.Serve.NewLogger(io.Discard); err != nil {
		t.Fatalf("container %s: %v", c.Name, err)
	}
	return cfg
}

// checkPod checks a workload's pod: probes on the service's health names, ports that agree
// with the flags, the metrics annotations, the grace period, security and resources, and a
// writable volume under every file concurd writes.
func checkPod(t *testing.T, w workload) {
	t.Helper()
	spec, c := &w.template.Spec, &w.template.Spec.Containers[0]
	where := w.kind + " " + w.name + ": "
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	host, port := splitPort(t, w.cfg.Serve.Listen)
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() || host == "localhost" {
		t.Errorf("%sconcurd listens on %s, which no other pod reaches", where, w.cfg.Serve.Listen)
	}
	if ports["grpc"] != port {
		t.Errorf("%scontainer port grpc %d, concurd listens on %d", where, ports["grpc"], port)
	}
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		want := healthNames[w.service]
		if name == "liveness" {
			want = "" // the whole server: a pod is alive while concurd serves at all
		}
		if p == nil || p.GRPC == nil {
			t.Errorf("%sno gRPC %s probe", where, name)
		} else if p.GRPC.Port != port || ptrValue(p.GRPC.Service) != want {
			t.Errorf("%s%s probe on port %d for %q, want port %d for %q", where, name, p.GRPC.Port, ptrValue(p.GRPC.Service), port, want)
		}
	}
	_, metrics := splitPort(t, w.cfg.Serve.MetricsListen)
	a := w.template.Annotations
	if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != strconv.Itoa(int(metrics)) || ports["metrics"] != metrics {
		t.Errorf("%smetrics on %q, container port %d, annotations %v: want them to agree", where, w.cfg.Serve.MetricsListen, ports["metrics"], a)
	}

	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Errorf("%sno preStop sleep", where)
	} else if grace, need := ptrValue(spec.TerminationGracePeriodSeconds), c.Lifecycle.PreStop.Sleep.Seconds+int64(w.cfg.Serve.ShutdownTimeout.Seconds()); grace <= need {
		t.Errorf("%sterminationGracePeriodSeconds %d, want more than the preStop sleep and --shutdown-timeout, %d s", where, grace, need)
	}

	pod, sc := spec.SecurityContext, c.SecurityContext
	if pod == nil || sc == nil {
		t.Fatalf("%sa securityContext is missing", where)
	}
	if !ptrValue(first(sc.RunAsNonRoot, pod.RunAsNonRoot)) || ptrValue(first(sc.RunAsUser, pod.RunAsUser)) == 0 {
		t.Errorf("%smay run as root", where)
	}
	if !ptrValue(sc.ReadOnlyRootFilesystem) || ptrValue(sc.AllowPrivilegeEscalation) || sc.AllowPrivilegeEscalation == nil || ptrValue(sc.Privileged) {
		t.Errorf("%swant a read-only root, no privilege escalation, no privileges: %+v", where, sc)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%scapabilities %+v, want all dropped", where, sc.Capabilities)
	}
	if seccomp := first(sc.SeccompProfile, pod.SeccompProfile); seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%sseccomp %+v, want RuntimeDefault", where, seccomp)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s%s request %v, limit %v", where, r, &req, &lim)
		}
	}

	var files []string
	switch w.service {
	case "printer":
		files = append(files, w.cfg.Printer.File)
	case "counter":
		if w.cfg.Counter.DB != counter.Memory && !w.cfg.Counter.Cluster.Enabled() {
			files = append(files, w.cfg.Counter.DB)
		}
	}
	for _, f := range files {
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return !m.ReadOnly && strings.HasPrefix(filepath.Clean(f), filepath.Clean(m.MountPath)+"/")
		}) {
			t.Errorf("%sconcurd writes %s, under no writable volume (the root is read-only)", where, f)
		}
	}
}

// checkScaling checks that a stateful service runs once, with its volume, and that a
// stateless one scales with an autoscaler and is evicted one pod at a time.
func checkScaling(t *testing.T, o objects, w workload) {
	t.Helper()
	where := w.kind + " " + w.name + ": "
	if slices.Contains(stateful, w.service) {
		i := slices.IndexFunc(o.statefulSets, func(s *appsv1.StatefulSet) bool { return s.Name == w.name && w.kind == "StatefulSet" })
		if i < 0 {
			t.Fatalf("%sthe %s keeps state: want a StatefulSet", where, w.service)
		}
		s := o.statefulSets[i]
		if w.service == "counter" && w.cfg.Counter.Cluster.Enabled() {
			checkCounterCluster(t, o, w, s)
		} else if ptrValue(s.Spec.Replicas) != 1 {
			t.Errorf("%sreplicas %d: the %s's owner must be one", where, ptrValue(s.Spec.Replicas), w.service)
		}
		if svc := o.service(s.Spec.ServiceName); svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone || !selects(t, labelSelector(svc.Spec.Selector), w.template.Labels) {
			t.Errorf("%sserviceName %q: want a headless Service of its pods", where, s.Spec.ServiceName)
		}
		for _, m := range w.template.Spec.Containers[0].VolumeMounts {
			if !slices.ContainsFunc(s.Spec.VolumeClaimTemplates, func(c corev1.PersistentVolumeClaim) bool { return c.Name == m.Name }) {
				t.Errorf("%smount %s has no volume claim template", where, m.Name)
			}
		}
		for _, a := range o.autoscalers {
			if a.Spec.ScaleTargetRef.Name == w.name {
				t.Errorf("%sscaled by HorizontalPodAutoscaler %s", where, a.Name)
			}
		}
		return
	}
	if w.kind != "Deployment" {
		t.Fatalf("%sthe %s keeps no state: want a Deployment", where, w.service)
	}
	if slices.ContainsFunc(o.deployments, func(d *appsv1.Deployment) bool { return d.Name == w.name && d.Spec.Replicas != nil }) {
		t.Errorf("%ssets replicas, which its autoscaler owns", where)
	}
	if !slices.ContainsFunc(o.autoscalers, func(a *autoscalingv2.HorizontalPodAutoscaler) bool {
		ref := a.Spec.ScaleTargetRef
		return ref.APIVersion == "apps/v1" && ref.Kind == "Deployment" && ref.Name == w.name && a.Namespace == w.namespace &&
			ptrValue(a.Spec.MinReplicas) >= 2 && a.Spec.MaxReplicas >= ptrValue(a.Spec.MinReplicas) && len(a.Spec.Metrics) > 0
	}) {
		t.Errorf("%sno HorizontalPodAutoscaler of at least 2 replicas scales it", where)
	}
	if !slices.ContainsFunc(o.budgets, func(b *policyv1.PodDisruptionBudget) bool {
		return b.Namespace == w.namespace && selects(t, b.Spec.Selector, w.template.Labels) && (b.Spec.MaxUnavailable != nil || b.Spec.MinAvailable != nil)
	}) {
		t.Errorf("%sno PodDisruptionBudget covers its pods", where)
	}
}

// checkServices checks that each Service selects the pods of one workload, on ports they
// have. Its port is the container's too: a headless Service's clients dial the pods.
func checkServices(t *testing.T, o objects, workloads []workload) {
	t.Helper()
	for _, svc := range o.services {
		var selected []workload
		for _, w := range workloads {
			if w.namespace == svc.Namespace && selects(t, labelSelector(svc.Spec.Selector), w.template.Labels) {
				selected = append(selected, w)
			}
		}
		if len(svc.Spec.Selector) == 0 || len(selected) != 1 {
			t.Errorf("Service %s selects %d workloads, want 1", svc.Name, len(selected))
			continue
		}
		for _, p := range svc.Spec.Ports {
			if !slices.ContainsFunc(selected[0].template.Spec.Containers[0].Ports, func(c corev1.ContainerPort) bool {
				return c.ContainerPort == p.Port && (p.TargetPort.String() == c.Name || p.TargetPort.IntValue() == int(c.ContainerPort))
			}) {
				t.Errorf("Service %s port %d (target %s) is no port of %s's container", svc.Name, p.Port, p.TargetPort.String(), selected[0].name)
			}
		}
	}
}

// checkPrinterAddr checks that a counter's --printer-addr names a Service of a printer, on
// its port.
func checkPrinterAddr(t *testing.T, o objects, workloads []workload) {
	t.Helper()
	for _, w := range workloads {
		if w.service != "counter" || w.cfg.PrinterDial.Addr == "" {
			continue
		}
		host, port := splitPort(t, w.cfg.PrinterDial.Addr)
		svc := o.service(host)
		if svc == nil || !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == port }) ||
			!slices.ContainsFunc(workloads, func(p workload) bool {
				return p.service == "printer" && selects(t, labelSelector(svc.Spec.Selector), p.template.Labels)
			}) {
			t.Errorf("%s: --printer-addr=%s is no printer's Service and port", w.name, w.cfg.PrinterDial.Addr)
		}
	}
}

func (o objects) service(name string) *corev1.Service {
	for _, s := range o.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// selects is a selector as workloads, Services and PodDisruptionBudgets read it: unlike
// NetworkPolicy's (matches), an empty one selects nothing.
func selects(t *testing.T, sel *metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	return sel != nil && (len(sel.MatchLabels) > 0 || len(sel.MatchExpressions) > 0) && matches(t, sel, l)
}

func labelSelector(l map[string]string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: l}
}

func splitPort(t *testing.T, addr string) (string, int32) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return host, int32(n)
}

func ptrValue[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

// first is a if it is set, else b: a container's security setting wins over its pod's.
func first[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}

// checkCounterCluster checks a counter that runs as a cluster on etcd (docs/cluster.md): at
// least three nodes, each advertising its own pod under the headless Service on the port it
// serves, etcd reached off the pod, and a budget that drains one node at a time.
func checkCounterCluster(t *testing.T, o objects, w workload, s *appsv1.StatefulSet) {
	t.Helper()
	where := w.kind + " " + w.name + ": "
	if ptrValue(s.Spec.Replicas) < 3 {
		t.Errorf("%sreplicas %d: a counter cluster wants at least 3 nodes", where, ptrValue(s.Spec.Replicas))
	}
	host, port := splitPort(t, w.cfg.Counter.Cluster.Advertise)
	_, listen := splitPort(t, w.cfg.Serve.Listen)
	if host != "$(POD_NAME)."+s.Spec.ServiceName || port != listen {
		t.Errorf("%s--counter-advertise=%s, want $(POD_NAME).%s:%d, the pod's own name under its headless Service", where, w.cfg.Counter.Cluster.Advertise, s.Spec.ServiceName, listen)
	}
	c := w.template.Spec.Containers[0]
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	}) {
		t.Errorf("%sPOD_NAME is not the pod's name, which --counter-advertise needs", where)
	}
	for e := range strings.SplitSeq(w.cfg.Counter.Cluster.Etcd, ",") {
		host := strings.TrimPrefix(strings.TrimPrefix(e, "http://"), "https://")
		host, _, _ = strings.Cut(host, ":")
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() || host == "localhost" {
			t.Errorf("%s--counter-etcd names %s, which is no etcd outside the pod", where, e)
		}
	}
	if !slices.ContainsFunc(o.budgets, func(b *policyv1.PodDisruptionBudget) bool {
		return b.Namespace == w.namespace && b.Spec.MaxUnavailable != nil && b.Spec.MaxUnavailable.IntValue() == 1 && selects(t, b.Spec.Selector, w.template.Labels)
	}) {
		t.Errorf("%sno PodDisruptionBudget lets one node at a time go", where)
	}
}
