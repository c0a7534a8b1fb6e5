package conformance

// What istiod makes of each AuthorizationPolicy for ztunnel, ambient mode's
// node proxy, which has no HTTP: its own conversion
// (pilot/pkg/serviceregistry/ambient, PolicyCollections), run on the
// manifests. `weather check`'s WEA0021 is held against it.

import (
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	securitybeta "istio.io/api/security/v1beta1"
	securityclient "istio.io/client-go/pkg/apis/security/v1"
	"istio.io/istio/pilot/pkg/serviceregistry/ambient"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/config/schema/gvk"
	"istio.io/istio/pkg/kube/krt"
	"istio.io/istio/pkg/test"
)

// ZtunnelPolicy is one AuthorizationPolicy as ztunnel receives it.
type ZtunnelPolicy struct {
	// Name is `NAMESPACE/NAME`.
	Name string `json:"name"`
	// Sent says whether ztunnel receives it at all (a CUSTOM policy, or one
	// with targetRefs, it does not).
	Sent bool `json:"sent"`
	// Groups is how many of its rules ztunnel matches.
	Groups int `json:"groups"`
	// Message is istiod's status message on it, if any.
	Message string `json:"message,omitempty"`
}

func TestZtunnelPolicies(t *testing.T) {
	job, ok := readJob(t, "WEATHER_ZTUNNEL_JOB")
	if !ok {
		job.Manifests = []string{"../k8s", "../istio/gateway-api/base", "../istio/security", "../istio/ambient", "../istio/gateway-api/stages/multiservice"}
	}
	istio, _, _, _, err := split(job.Manifests)
	if err != nil {
		t.Fatal(err)
	}
	var policies []*securityclient.AuthorizationPolicy
	for _, c := range configs(t, istio) {
		if c.GroupVersionKind != gvk.AuthorizationPolicy {
			continue
		}
		p := &securityclient.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: c.Name, Namespace: c.Namespace}}
		proto.Merge(&p.Spec, c.Spec.(*securitybeta.AuthorizationPolicy))
		policies = append(policies, p)
	}
	// One policy at a time: istiod keys what it derives by the policy it
	// sends, so the policies it does not send (CUSTOM, AUDIT) share one key
	// and a collection of several keeps only one of them.
	stop := test.NewStop(t)
	opts := krt.NewOptionsBuilder(stop, "", krt.GlobalDebugHandler)
	peers := krt.NewStaticCollection[*securityclient.PeerAuthentication](nil, nil, opts.WithName("peers")...)
	waypoints := krt.NewStaticCollection[ambient.Waypoint](nil, nil, opts.WithName("waypoints")...)
	meshConfig := krt.NewStatic(&ambient.MeshConfig{MeshConfig: mesh.DefaultMeshConfig()}, true, opts.WithName("mesh")...)
	var out []ZtunnelPolicy
	for _, p := range policies {
		name := p.Namespace + "/" + p.Name
		authz := krt.NewStaticCollection(nil, []*securityclient.AuthorizationPolicy{p}, opts.WithName("policy "+name)...)
		derived, _ := ambient.PolicyCollections(authz, peers, meshConfig, waypoints, opts, ambient.FeatureFlags{})
		if !derived.WaitUntilSynced(stop) {
			t.Fatalf("%s: istiod's policy collection did not sync", name)
		}
		z := ZtunnelPolicy{Name: name}
		for _, w := range derived.List() {
			z.Sent = w.Authorization != nil
			if w.Authorization != nil {
				z.Groups = len(w.Authorization.Groups)
			}
			if w.Binding.Status != nil {
				z.Message = w.Binding.Status.Message
			}
		}
		out = append(out, z)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if job.Out == "" {
		// istio/security in ambient mode: every ALLOW rule names methods,
		// so ztunnel is sent each policy with no rule left to match.
		for _, z := range out {
			t.Logf("%+v", z)
			if z.Name == "weather/allow-nothing" {
				continue
			}
			if !z.Sent || z.Groups != 0 || !strings.Contains(z.Message, "(found: methods)") {
				t.Errorf("%s: ztunnel should get it with its HTTP rule left out: %+v", z.Name, z)
			}
		}
		return
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(job.Out, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
