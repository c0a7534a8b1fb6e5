package conformance

// The authorization oracle: istiod builds the inbound listener of every
// Deployment's sidecar (its RBAC filters translated from the
// AuthorizationPolicies), a real Envoy serves those filters over mutual TLS,
// and each request of the job is sent with the client certificate of the
// identity it asks for (a SPIFFE URI, as Istio's workload certificates carry),
// or with none. The status Envoy answers (200, or 403 from RBAC) is what the
// Rust test holds the model's decision against.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/simulation"
	"istio.io/istio/pilot/test/xds"
)

// AuthzJob adds to a Job the Envoy to run and the requests to send.
type AuthzJob struct {
	Job
	Envoy string     `json:"envoy"`
	Asks  []AuthzAsk `json:"asks"`
}

// AuthzAsk is one request: from the identity `From` (`NS/SA`, or empty for a
// client without certificate) to the sidecar of Deployment `To`.
type AuthzAsk struct {
	From    string            `json:"from"`
	To      string            `json:"to"`
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Host    string            `json:"host"`
	Headers map[string]string `json:"headers"`
}

// AuthzExport is Envoy's status per ask, and the number of RBAC filters
// istiod put on each sidecar's inbound chain.
type AuthzExport struct {
	Statuses []int          `json:"statuses"`
	Filters  map[string]int `json:"filters"`
}

// inboundFilters is the RBAC filters of the inbound HTTP chain istiod builds
// for a Deployment's sidecar on `port` (the mTLS chain), and the connection
// manager they sit in.
func inboundFilters(t *testing.T, s *xds.FakeDiscoveryServer, p *model.Proxy, port uint32) ([]json.RawMessage, *hcm.HttpConnectionManager) {
	p = s.SetupProxy(p)
	sim := simulation.NewSimulation(t, s, p)
	for _, l := range sim.Listeners {
		if l.Name != "virtualInbound" {
			continue
		}
		for _, fc := range l.FilterChains {
			m := fc.GetFilterChainMatch()
			if m.GetDestinationPort().GetValue() != port || m.GetTransportProtocol() != "tls" {
				continue
			}
			if h := httpManager(t, fc); h != nil {
				var out []json.RawMessage
				for _, f := range h.HttpFilters {
					if f.Name != "envoy.filters.http.rbac" {
						continue
					}
					b, err := protojson.Marshal(f)
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, b)
				}
				return out, h
			}
		}
	}
	t.Fatalf("istiod built no mTLS HTTP chain for port %d of %s", port, p.ID)
	return nil, nil
}

func httpManager(t *testing.T, fc *listener.FilterChain) *hcm.HttpConnectionManager {
	for _, f := range fc.Filters {
		if f.Name != "envoy.filters.network.http_connection_manager" {
			continue
		}
		var h hcm.HttpConnectionManager
		if err := f.GetTypedConfig().UnmarshalTo(&h); err != nil {
			t.Fatal(err)
		}
		return &h
	}
	return nil
}

// pods is what the cluster would add for the Deployments: a running pod
// each, at the address its sidecar is given (10.244.0.N), with its
// containers' named ports, which a Service's named targetPort resolves to:
// istiod then builds each sidecar's inbound chain for its port.
func pods(t *testing.T, deployments []object) string {
	var out strings.Builder
	for i, d := range deployments {
		ns, name := d.Metadata.Namespace, d.Metadata.Name
		ip := fmt.Sprintf("10.244.0.%d", i+10)
		labels, err := json.Marshal(d.Spec.Template.Metadata.Labels)
		if err != nil {
			t.Fatal(err)
		}
		containers, err := json.Marshal(d.Spec.Template.Spec.Containers)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: %s-0, namespace: %s, labels: %s}\nspec: {serviceAccountName: %s, containers: %s}\nstatus: {podIP: %s, podIPs: [{ip: %s}], phase: Running, conditions: [{type: Ready, status: \"True\"}]}\n",
			name, ns, labels, d.Spec.Template.Spec.ServiceAccountName, containers, ip, ip)
	}
	return out.String()
}

type pair struct{ cert, key string }

func certificate(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, uri string, serial int64) (pair, tls.Certificate) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "weather-oracle"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"envoy"},
	}
	if uri != "" {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := pair{
		cert: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		key:  string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})),
	}
	c, err := tls.X509KeyPair([]byte(p.cert), []byte(p.key))
	if err != nil {
		t.Fatal(err)
	}
	return p, c
}

// TestAuthz runs the job in WEATHER_AUTHZ_JOB. Without one it checks that
// istiod puts RBAC filters on the shipped least-privilege policies' sidecars.
func TestAuthz(t *testing.T) {
	var job AuthzJob
	path := os.Getenv("WEATHER_AUTHZ_JOB")
	if path == "" {
		job.Manifests = []string{"../k8s", "../istio/base", "../istio/security", "../istio/stages/multiservice"}
	} else {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &job); err != nil {
			t.Fatal(err)
		}
	}
	istio, kube, deployments, _, err := split(job.Manifests)
	if err != nil {
		t.Fatal(err)
	}
	kube += pods(t, deployments)
	// JWT claims reach RBAC through Istio's own istio_authn filter, which the
	// stock Envoy lacks: RequestAuthentications stay out of this oracle.
	var kept []string
	for _, doc := range strings.Split(istio, "\n---\n") {
		if !strings.Contains(doc, "kind: RequestAuthentication") {
			kept = append(kept, doc)
		}
	}
	istio = strings.Join(kept, "\n---\n")
	s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{Configs: configs(t, istio), KubernetesObjectString: kube})
	ex := AuthzExport{Filters: map[string]int{}}
	type dest struct {
		filters []json.RawMessage
		h       *hcm.HttpConnectionManager
		addr    string
	}
	dests := map[string]dest{}
	for i, d := range deployments {
		ns := d.Metadata.Namespace
		labels := d.Spec.Template.Metadata.Labels
		port := d.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort
		f, h := inboundFilters(t, s, &model.Proxy{
			Type:            model.SidecarProxy,
			ID:              fmt.Sprintf("%s-0.%s", d.Metadata.Name, ns),
			Labels:          labels,
			ConfigNamespace: ns,
			IPAddresses:     []string{fmt.Sprintf("10.244.0.%d", i+10)},
			Metadata:        &model.NodeMetadata{Labels: labels, Namespace: ns, ClusterID: "Kubernetes"},
		}, port)
		ex.Filters[d.Metadata.Name] = len(f)
		// Each sidecar on its own loopback address and its own port (RBAC's
		// destination port is the one the connection came in on); the
		// address block is this process's, so that runs side by side do not
		// meet.
		pid := os.Getpid()
		dests[d.Metadata.Name] = dest{f, h, fmt.Sprintf("127.%d.%d.%d:%d", 1+pid%250, (pid/250)%250, 10+i, port)}
	}
	if job.Out == "" {
		for _, name := range []string{"frontend-v1", "forecast-v2", "recommendation-v1"} {
			if ex.Filters[name] == 0 {
				t.Errorf("%s: istiod generated no RBAC filter", name)
			}
		}
		return
	}

	// A CA, a certificate for Envoy, and one per identity asked for.
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "weather-oracle-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	server, _ := certificate(t, ca, caKey, "", 2)

	var listeners []any
	for name, d := range dests {
		var filters []any
		for _, f := range d.filters {
			var v any
			if err := json.Unmarshal(f, &v); err != nil {
				t.Fatal(err)
			}
			filters = append(filters, v)
		}
		filters = append(filters, map[string]any{
			"name":         "envoy.filters.http.router",
			"typed_config": map[string]any{"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
		})
		host, port, _ := net.SplitHostPort(d.addr)
		manager := map[string]any{
			"@type":       "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
			"stat_prefix": name,
			// Istio's inbound path handling, as istiod set it.
			"normalize_path":                   d.h.GetNormalizePath().GetValue(),
			"merge_slashes":                    d.h.GetMergeSlashes(),
			"path_with_escaped_slashes_action": d.h.GetPathWithEscapedSlashesAction().String(),
			"route_config": map[string]any{"virtual_hosts": []any{map[string]any{
				"name": "app", "domains": []string{"*"},
				"routes": []any{map[string]any{
					"match":           map[string]any{"prefix": "/"},
					"direct_response": map[string]any{"status": 200, "body": map[string]any{"inline_string": "app"}},
				}},
			}}},
			"http_filters": filters,
		}
		listeners = append(listeners, map[string]any{
			"name":    name,
			"address": map[string]any{"socket_address": map[string]any{"address": host, "port_value": port}},
			// A port taken by anything else fails to bind, loudly, instead of
			// being shared (Envoy's default SO_REUSEPORT).
			"enable_reuse_port": false,
			"filter_chains": []any{map[string]any{
				"filters": []any{map[string]any{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}},
				"transport_socket": map[string]any{
					"name": "envoy.transport_sockets.tls",
					"typed_config": map[string]any{
						"@type":                      "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
						"require_client_certificate": false,
						"common_tls_context": map[string]any{
							"tls_certificates": []any{map[string]any{
								"certificate_chain": map[string]any{"inline_string": server.cert},
								"private_key":       map[string]any{"inline_string": server.key},
							}},
							"validation_context": map[string]any{"trusted_ca": map[string]any{"inline_string": caPEM}},
						},
					},
				},
			}},
		})
	}
	dir := t.TempDir()
	bootstrap := filepath.Join(dir, "envoy.json")
	b, err := json.Marshal(map[string]any{"static_resources": map[string]any{"listeners": listeners}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bootstrap, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(job.Envoy, "-c", bootstrap, "--concurrency", "1", "--disable-hot-restart", "-l", "error")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start Envoy %s: %v", job.Envoy, err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	for _, d := range dests {
		deadline := time.Now().Add(60 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", d.addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Envoy does not listen on %s", d.addr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	clients := map[string]*http.Client{}
	client := func(from string) *http.Client {
		if c, ok := clients[from]; ok {
			return c
		}
		cfg := &tls.Config{RootCAs: pool, ServerName: "envoy"}
		if from != "" {
			ns, sa, _ := strings.Cut(from, "/")
			_, c := certificate(t, ca, caKey, fmt.Sprintf("spiffe://cluster.local/ns/%s/sa/%s", ns, sa), int64(len(clients)+10))
			cfg.Certificates = []tls.Certificate{c}
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
		clients[from] = c
		return c
	}
	for _, a := range job.Asks {
		d, ok := dests[a.To]
		if !ok {
			t.Fatalf("no Deployment %s", a.To)
		}
		req, err := http.NewRequest(a.Method, "https://"+d.addr+a.Path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = a.Host
		for k, v := range a.Headers {
			req.Header.Set(k, v)
		}
		res, err := client(a.From).Do(req)
		if err != nil {
			t.Fatalf("%+v: %v", a, err)
		}
		res.Body.Close()
		ex.Statuses = append(ex.Statuses, res.StatusCode)
	}
	out, err := json.Marshal(ex)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(job.Out, out, 0o644); err != nil {
		t.Fatal(err)
	}
}
