package conformance

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"sigs.k8s.io/yaml"
)

// What the API server does to Gateway API objects before istiod sees them,
// which the fake Kubernetes client of istiod's test server does not: fill in
// the defaults the CRDs declare (a rule without matches gets `path: PathPrefix
// /`, a header match the type `Exact`, a backendRef the weight 1...). The
// defaults are applied by the API server's own algorithm (apiextensions-
// apiserver's structural defaulting) from the CRDs of the Gateway API release
// istiod is built with.

// gatewayAPIGroup is the API group of Gateway API.
const gatewayAPIGroup = "gateway.networking.k8s.io"

// gatewayClassIstio is the class whose Gateways istiod deploys.
const gatewayClassIstio = "istio"

// gatewayClassWaypoint is the class of ambient mode's waypoints.
const gatewayClassWaypoint = "istio-waypoint"

// crdDefaults holds a structural schema per kind and version.
type crdDefaults map[string]*structuralschema.Structural

// gatewayAPICRDs reads the standard CRDs of the Gateway API module this test
// is built with (istiod's own dependency), from the module cache.
func gatewayAPICRDs() (crdDefaults, error) {
	// The module as this module's build selects it, downloaded if need be.
	dl, err := exec.Command("go", "mod", "download", "-json", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return nil, fmt.Errorf("go mod download sigs.k8s.io/gateway-api: %v", err)
	}
	var mod struct{ Dir, Version string }
	if err := json.Unmarshal(dl, &mod); err != nil || mod.Dir == "" {
		return nil, fmt.Errorf("go mod download sigs.k8s.io/gateway-api: no module directory in %q", dl)
	}
	dir := filepath.Join(mod.Dir, "config", "crd", "standard")
	files, err := filepath.Glob(filepath.Join(dir, gatewayAPIGroup+"_*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no Gateway API CRDs in %s ", dir)
	}
	out := crdDefaults{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, doc := range strings.Split("\n"+string(b), "\n---") {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := yaml.Unmarshal([]byte(doc), &crd); err != nil {
				return nil, fmt.Errorf("%s: %v", f, err)
			}
			if crd.Kind != "CustomResourceDefinition" {
				continue
			}
			for _, v := range crd.Spec.Versions {
				if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
					continue
				}
				var internal apiextensions.JSONSchemaProps
				if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
					return nil, err
				}
				s, err := structuralschema.NewStructural(&internal)
				if err != nil {
					return nil, fmt.Errorf("%s %s: %v", crd.Spec.Names.Kind, v.Name, err)
				}
				out[gatewayAPIGroup+"/"+v.Name+" "+crd.Spec.Names.Kind] = s
			}
		}
	}
	return out, nil
}

// defaulted is the object `doc` as the API server stores it.
func (c crdDefaults) defaulted(doc string) (string, error) {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		return "", err
	}
	key := fmt.Sprint(m["apiVersion"]) + " " + fmt.Sprint(m["kind"])
	s, ok := c[key]
	if !ok {
		return "", fmt.Errorf("no standard CRD serves %s", key)
	}
	structuraldefaulting.Default(m, s)
	b, err := yaml.Marshal(m)
	return string(b), err
}

// deployed is what istiod's controller deploys for a Gateway: a Service
// `service` (cluster IP `clusterIP`, these ports) selecting the pods labelled
// with the Gateway's name, and one such pod at the address `ip`, running as
// `account` when one is given, with `status` beside its address.
type deployed struct {
	gateway, namespace, class, managedBy string
	service, clusterIP, pod, account     string
	ports                                []map[string]any
	status                               map[string]any
}

// objects renders the Service and the pod, and returns the pod's labels.
func (d deployed) objects(ip string) (objects []string, labels map[string]string) {
	labels = map[string]string{
		"gateway.networking.k8s.io/gateway-name":       d.gateway,
		"gateway.networking.k8s.io/gateway-class-name": d.class,
		"gateway.istio.io/managed":                     d.managedBy,
	}
	svc := map[string]any{
		"apiVersion": "v1",
		"kind":       "Service",
		"metadata":   map[string]any{"name": d.service, "namespace": d.namespace, "labels": labels},
		"spec": map[string]any{
			"clusterIP": d.clusterIP,
			"selector":  map[string]string{"gateway.networking.k8s.io/gateway-name": d.gateway},
			"ports":     d.ports,
		},
	}
	spec := map[string]any{
		"containers": []map[string]any{{"name": "istio-proxy", "image": "istio/proxyv2"}},
	}
	if d.account != "" {
		spec["serviceAccountName"] = d.account
	}
	status := map[string]any{"phase": "Running", "podIP": ip, "podIPs": []map[string]string{{"ip": ip}}}
	for k, v := range d.status {
		status[k] = v
	}
	pod := map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata":   map[string]any{"name": d.pod, "namespace": d.namespace, "labels": labels},
		"spec":       spec,
		"status":     status,
	}
	for _, o := range []any{svc, pod} {
		b, _ := yaml.Marshal(o)
		objects = append(objects, string(b))
	}
	return objects, labels
}

// gatewayDeployment is what istiod deploys for a Gateway of class istio (its
// kube-gateway.yaml template): a Service `NAME-istio` on the listeners'
// ports and pods labelled with the Gateway's name. The pod is given the
// address `ip`.
func gatewayDeployment(name, namespace string, ports []uint32, ip string) (objects []string, labels map[string]string) {
	var sp []map[string]any
	for _, p := range ports {
		sp = append(sp, map[string]any{"name": fmt.Sprintf("http-%d", p), "port": p, "targetPort": p, "appProtocol": "http"})
	}
	full := name + "-" + gatewayClassIstio
	return deployed{
		gateway: name, namespace: namespace, class: gatewayClassIstio, managedBy: "istio.io-gateway-controller",
		service: full, clusterIP: "10.96.1.1", pod: full + "-0", account: full, ports: sp,
	}.objects(ip)
}

// waypointDeployment is what istiod deploys for a waypoint (class
// istio-waypoint): a Service of the Gateway's name on the HBONE port 15008,
// and its pods, ready. The pod is given the address `ip`.
func waypointDeployment(name, namespace, ip string) (objects []string, labels map[string]string) {
	return deployed{
		gateway: name, namespace: namespace, class: gatewayClassWaypoint, managedBy: "istio.io-mesh-controller",
		service: name, clusterIP: "10.96.2.1", pod: name + "-0",
		ports:  []map[string]any{{"name": "mesh", "port": 15008, "appProtocol": "hbone"}},
		status: map[string]any{"conditions": []map[string]string{{"type": "Ready", "status": "True"}}},
	}.objects(ip)
}

// withAddress is a Gateway as its controller leaves it: its status names the
// address of the Service deployed for it, which is how ambient mode finds a
// waypoint.
func withAddress(doc, name, namespace string) (string, error) {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		return "", err
	}
	m["status"] = map[string]any{"addresses": []map[string]string{{
		"type": "Hostname", "value": name + "." + namespace + ".svc.cluster.local",
	}}}
	b, err := yaml.Marshal(m)
	return string(b), err
}
