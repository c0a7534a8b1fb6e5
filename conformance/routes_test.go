// Package conformance holds Weather's routing model against Istio itself: it
// loads the very manifests `weather` reads into istiod's own test discovery
// server (pilot/test/xds) and exports, for the ingress gateway and for the
// sidecar of every Deployment, the HTTP route configurations istiod pushes.
// A real Envoy loaded with them is the oracle of the Rust differential test
// (crates/weather/tests/weather/conformance/); docs/architecture.md says how.
package conformance

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"istio.io/istio/pilot/pkg/config/kube/crd"
	"istio.io/istio/pilot/pkg/features"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/simulation"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pilot/test/xdstest"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/test"
)

// Job is what the differential test asks for: the manifests (files or
// folders, as `kubectl apply -f` reads them) and where to write the export.
type Job struct {
	Manifests []string `json:"manifests"`
	Out       string   `json:"out"`
}

// Export is what istiod pushes: per proxy (`ingress` or a Deployment's name),
// its HTTP route configurations by name (`http.80`, `3002`, ...).
type Export struct {
	Proxies map[string]Proxy `json:"proxies"`
}

type Proxy struct {
	Namespace string                     `json:"namespace"`
	Labels    map[string]string          `json:"labels"`
	Routes    map[string]json.RawMessage `json:"routes"`
	Clusters  []string                   `json:"clusters"`
	// The outbound clusters (`outbound|PORT|SUBSET|FQDN`) as istiod writes
	// them: circuit breakers, outlier detection, protocol options.
	ClusterConfigs map[string]json.RawMessage `json:"clusterConfigs"`
}

// IngressLabels are those of the demo profile's istio-ingressgateway pods.
var IngressLabels = map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway"}

type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Spec struct {
		ClusterIP        string `json:"clusterIP"`
		GatewayClassName string `json:"gatewayClassName"`
		Listeners        []struct {
			Port uint32 `json:"port"`
		} `json:"listeners"`
		Template struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Spec struct {
				ServiceAccountName string `json:"serviceAccountName"`
				Containers         []struct {
					Name  string `json:"name"`
					Image string `json:"image"`
					Ports []struct {
						Name          string `json:"name,omitempty"`
						ContainerPort uint32 `json:"containerPort"`
					} `json:"ports"`
				} `json:"containers"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

// ns is the object's namespace, `default` when it names none (as kubectl
// applies it).
func (o object) ns() string {
	if o.Metadata.Namespace == "" {
		return "default"
	}
	return o.Metadata.Namespace
}

// files lists what `kubectl apply -f` reads under each path: a folder's .yaml,
// .yml and .json files in name order, not recursing.
func files(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		var found []string
		for _, e := range entries {
			switch filepath.Ext(e.Name()) {
			case ".yaml", ".yml", ".json":
				found = append(found, filepath.Join(p, e.Name()))
			}
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

// split reads the manifests into Istio configuration and Kubernetes objects,
// the Deployments whose sidecars to export, and the Gateways of class istio.
// What the API server would add is added: a cluster IP to a Service without
// one, the label `kubernetes.io/metadata.name` to a Namespace, the CRDs'
// defaults to a Gateway API object.
func split(paths []string) (istio, kube string, deployments, gateways []object, err error) {
	fs, err := files(paths)
	if err != nil {
		return "", "", nil, nil, err
	}
	var crds crdDefaults
	var ic, kc []string
	// A later object of the same kind and name replaces the earlier, as
	// `kubectl apply` leaves the last one applied (istio/security/ applies the
	// Namespace again, with more labels).
	seen := map[string]int{}
	ip := 0
	for _, f := range fs {
		text, err := os.ReadFile(f)
		if err != nil {
			return "", "", nil, nil, err
		}
		for _, doc := range strings.Split("\n"+string(text), "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var o object
			if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
				return "", "", nil, nil, fmt.Errorf("%s: %v", f, err)
			}
			if o.Kind == "" {
				continue
			}
			if strings.HasPrefix(o.APIVersion, gatewayAPIGroup+"/") {
				if crds == nil {
					if crds, err = gatewayAPICRDs(); err != nil {
						return "", "", nil, nil, err
					}
				}
				if doc, err = crds.defaulted(doc); err != nil {
					return "", "", nil, nil, fmt.Errorf("%s: %v", f, err)
				}
				if o.Kind == "Gateway" && o.Spec.GatewayClassName == gatewayClassIstio {
					gateways = append(gateways, o)
				}
				if o.Kind == "Gateway" && o.Spec.GatewayClassName == gatewayClassWaypoint {
					if doc, err = withAddress(doc, o.Metadata.Name, o.ns()); err != nil {
						return "", "", nil, nil, err
					}
					gateways = append(gateways, o)
				}
			}
			if o.Kind == "Namespace" && o.APIVersion == "v1" {
				var m map[string]any
				if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
					return "", "", nil, nil, err
				}
				meta := m["metadata"].(map[string]any)
				labels, _ := meta["labels"].(map[string]any)
				if labels == nil {
					labels = map[string]any{}
				}
				labels["kubernetes.io/metadata.name"] = o.Metadata.Name
				meta["labels"] = labels
				b, err := yaml.Marshal(m)
				if err != nil {
					return "", "", nil, nil, err
				}
				doc = string(b)
			}
			key := o.Kind + " " + o.Metadata.Namespace + "/" + o.Metadata.Name
			switch {
			case strings.HasPrefix(o.APIVersion, "networking.istio.io/"),
				strings.HasPrefix(o.APIVersion, "security.istio.io/"):
				// A stage's DestinationRule replaces istio/base's of that name.
				if i, ok := seen[key]; ok {
					ic[i] = doc
					continue
				}
				seen[key] = len(ic)
				ic = append(ic, doc)
			case o.Kind == "Service" && o.Spec.ClusterIP == "":
				ip++
				var m map[string]any
				if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
					return "", "", nil, nil, err
				}
				m["spec"].(map[string]any)["clusterIP"] = fmt.Sprintf("10.96.0.%d", ip)
				b, err := yaml.Marshal(m)
				if err != nil {
					return "", "", nil, nil, err
				}
				kc = append(kc, string(b))
			default:
				if o.Kind == "Deployment" {
					replaced := false
					for i, d := range deployments {
						if d.Metadata.Name == o.Metadata.Name && d.Metadata.Namespace == o.Metadata.Namespace {
							deployments[i], replaced = o, true
						}
					}
					if !replaced {
						deployments = append(deployments, o)
					}
				}
				if i, ok := seen[key]; ok {
					kc[i] = doc
					continue
				}
				seen[key] = len(kc)
				kc = append(kc, doc)
			}
		}
	}
	return strings.Join(ic, "\n---\n"), strings.Join(kc, "\n---\n"), deployments, gateways, nil
}

// pushed is what istiod pushes to `p`: every HTTP route configuration, by
// name, the names of the clusters it defines, and its outbound clusters.
func pushed(t *testing.T, s *xds.FakeDiscoveryServer, p *model.Proxy, namespace string) Proxy {
	sim := simulation.NewSimulation(t, s, s.SetupProxy(p))
	out := Proxy{Namespace: namespace, Labels: p.Labels, Routes: map[string]json.RawMessage{}}
	for _, rc := range sim.Routes {
		b, err := protojson.Marshal(rc)
		if err != nil {
			t.Fatal(err)
		}
		out.Routes[rc.Name] = b
	}
	out.ClusterConfigs = map[string]json.RawMessage{}
	for _, c := range sim.Clusters {
		out.Clusters = append(out.Clusters, c.Name)
		if strings.HasPrefix(c.Name, "outbound|") {
			b, err := protojson.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			out.ClusterConfigs[c.Name] = b
		}
	}
	sort.Strings(out.Clusters)
	return out
}

// waypointPushed is what istiod pushes to a waypoint: the route
// configuration of each Service it serves, inline in the filter chain
// `inbound-vip|PORT|http|FQDN` of its listener main_internal, by that name.
func waypointPushed(t *testing.T, s *xds.FakeDiscoveryServer, p *model.Proxy) Proxy {
	proxy := s.SetupProxy(p)
	out := Proxy{Namespace: p.ConfigNamespace, Labels: p.Labels, Routes: map[string]json.RawMessage{}}
	l := xdstest.ExtractListener("main_internal", s.Listeners(proxy))
	if l == nil {
		t.Fatalf("istiod gave waypoint %s no listener main_internal", p.ID)
	}
	for _, fc := range l.FilterChains {
		if !strings.HasPrefix(fc.Name, "inbound-vip|") {
			continue
		}
		h := xdstest.ExtractHTTPConnectionManager(t, fc)
		if h == nil || h.GetRouteConfig() == nil {
			continue
		}
		b, err := protojson.Marshal(h.GetRouteConfig())
		if err != nil {
			t.Fatal(err)
		}
		out.Routes[fc.Name] = b
	}
	for _, c := range s.Clusters(proxy) {
		out.Clusters = append(out.Clusters, c.Name)
	}
	sort.Strings(out.Clusters)
	return out
}

// readJob reads the Job named by the environment variable `name`, if it is set.
func readJob(t *testing.T, name string) (Job, bool) {
	var job Job
	path := os.Getenv(name)
	if path == "" {
		return job, false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &job); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return job, true
}

// configs parses Istio objects as istiod's Kubernetes config client stores
// them: with the cluster's domain suffix (pilot/pkg/config/kube/crdclient sets
// `Domain`), which short host names are expanded with, and `default` for an
// object that names no namespace.
func configs(t *testing.T, istio string) []config.Config {
	parsed, _, err := crd.ParseInputs(istio)
	if err != nil {
		t.Fatalf("istiod refuses the Istio objects: %v", err)
	}
	for i := range parsed {
		parsed[i].Domain = "cluster.local"
		if parsed[i].Namespace == "" {
			parsed[i].Namespace = "default"
		}
	}
	return parsed
}

func export(t *testing.T, job Job) Export {
	istio, kube, deployments, gateways, err := split(job.Manifests)
	if err != nil {
		t.Fatal(err)
	}
	// The ingress: the demo profile's istio-ingressgateway, or, where the
	// manifests have a Gateway of class istio, the pod istiod deploys for it.
	ingress := &model.Proxy{
		Type:            model.Router,
		Labels:          IngressLabels,
		ConfigNamespace: "istio-system",
		Metadata:        &model.NodeMetadata{Labels: IngressLabels, Namespace: "istio-system"},
	}
	var waypoints []object
	var edges []object
	for _, g := range gateways {
		if g.Spec.GatewayClassName == gatewayClassWaypoint {
			waypoints = append(waypoints, g)
		} else {
			edges = append(edges, g)
		}
	}
	if len(edges) > 0 {
		gw := edges[0]
		ns := gw.ns()
		var ports []uint32
		for _, l := range gw.Spec.Listeners {
			ports = append(ports, l.Port)
		}
		const ip = "10.244.1.1"
		objects, labels := gatewayDeployment(gw.Metadata.Name, ns, ports, ip)
		kube = strings.Join(append([]string{kube}, objects...), "\n---\n")
		ingress = proxy(model.Router, gw.Metadata.Name+"-istio-0."+ns, ns, ip, labels)
	}
	// Ambient mode's waypoints: the pods istiod deploys for them.
	var waypointProxies []*model.Proxy
	for i, w := range waypoints {
		ns := w.ns()
		ip := fmt.Sprintf("10.244.2.%d", i+1)
		objects, labels := waypointDeployment(w.Metadata.Name, ns, ip)
		kube = strings.Join(append([]string{kube}, objects...), "\n---\n")
		waypointProxies = append(waypointProxies, proxy(model.Waypoint, w.Metadata.Name+"-0."+ns, ns, ip, labels))
	}
	if len(waypoints) > 0 {
		test.SetForTest(t, &features.EnableAmbient, true)
	}
	s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{Configs: configs(t, istio), KubernetesObjectString: kube})
	ex := Export{Proxies: map[string]Proxy{}}
	ex.Proxies["ingress"] = pushed(t, s, ingress, ingress.ConfigNamespace)
	for i, w := range waypoints {
		ex.Proxies["waypoint:"+waypointProxies[i].ConfigNamespace+"/"+w.Metadata.Name] = waypointPushed(t, s, waypointProxies[i])
	}
	for i, d := range deployments {
		ns := d.ns()
		labels := d.Spec.Template.Metadata.Labels
		ip := fmt.Sprintf("10.244.0.%d", i+10)
		ex.Proxies[d.Metadata.Name] = pushed(t, s, proxy(model.SidecarProxy, d.Metadata.Name+"-0."+ns, ns, ip, labels), ns)
	}
	return ex
}

// proxy is a pod's proxy of type `typ` as istiod sees it connect: its ID,
// namespace, address and labels.
func proxy(typ model.NodeType, id, ns, ip string, labels map[string]string) *model.Proxy {
	return &model.Proxy{
		Type:            typ,
		ID:              id,
		Labels:          labels,
		ConfigNamespace: ns,
		IPAddresses:     []string{ip},
		Metadata:        &model.NodeMetadata{Labels: labels, Namespace: ns},
	}
}

// TestExport writes what istiod pushes for the job in WEATHER_ORACLE_JOB (a
// JSON Job). Without one it exports the shipped multiservice stage and checks
// the routes the release relies on, so `go test ./...` alone tests something.
func TestExport(t *testing.T) {
	job, given := readJob(t, "WEATHER_ORACLE_JOB")
	if !given {
		job = Job{Manifests: []string{"../k8s", "../istio/base", "../istio/stages/multiservice"}}
	}
	ex := export(t, job)
	if job.Out == "" {
		checkMultiservice(t, ex)
		return
	}
	b, err := json.Marshal(ex)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(job.Out, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkMultiservice: the gateway's tester rule leads to frontend v2, and
// frontend v2's sidecar, unlike v1's, routes forecast to v2 first.
func checkMultiservice(t *testing.T, ex Export) {
	clusters := func(proxy, rc string) []string {
		raw, ok := ex.Proxies[proxy].Routes[rc]
		if !ok {
			t.Fatalf("%s has no route configuration %s", proxy, rc)
		}
		var c route.RouteConfiguration
		if err := protojson.Unmarshal(raw, &c); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, vh := range c.VirtualHosts {
			for _, r := range vh.Routes {
				if cl := r.GetRoute().GetCluster(); cl != "" && strings.Contains(cl, ".weather.") {
					out = append(out, r.Name+"="+cl)
				}
			}
		}
		return out
	}
	want := func(got []string, first string) {
		t.Helper()
		if len(got) == 0 || got[0] != first {
			t.Errorf("want %s first, got %v", first, got)
		}
	}
	want(clusters("ingress", "http.80"), "tester-to-v2=outbound|3000|v2|frontend.weather.svc.cluster.local")
	want(clusters("frontend-v2", "3002"), "v2-callers-to-v2=outbound|3002|v2|forecast.weather.svc.cluster.local")
	want(clusters("frontend-v1", "3002"), "others-to-v1=outbound|3002|v1|forecast.weather.svc.cluster.local")
}
