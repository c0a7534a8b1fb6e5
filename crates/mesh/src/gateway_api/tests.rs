use crate::{Manifests, Mesh, Request, Routed, routing::Caller};

fn mesh(yaml: &str) -> Mesh {
    let mut m = Manifests::default();
    m.add_yaml("test.yaml", yaml).unwrap();
    Mesh::compile(&m)
}

const SERVICES: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: weather}
---
apiVersion: v1
kind: Service
metadata: {name: forecast, namespace: weather}
spec: {selector: {app: forecast}, ports: [{port: 3002}]}
---
apiVersion: v1
kind: Service
metadata: {name: forecast-v1, namespace: weather}
spec: {selector: {app: forecast, version: v1}, ports: [{port: 3002}]}
---
apiVersion: v1
kind: Service
metadata: {name: forecast-v2, namespace: weather}
spec: {selector: {app: forecast, version: v2}, ports: [{port: 3002}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  gatewayClassName: istio
  listeners:
    - name: http
      port: 80
      protocol: HTTP
      allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {kubernetes.io/metadata.name: weather}}}}
"#;

/// The destinations of a GET from the ingress (or a sidecar, given its
/// namespace) to `host` and `path`, or why none.
fn targets<'m>(
    mesh: &'m Mesh,
    from: Option<&str>,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Routed<'m> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let req = Request {
        authority: host,
        path,
        method: "GET",
        scheme: "http",
        headers: headers.as_slice(),
    };
    let labels = Default::default();
    let caller = match from {
        None => Caller::Ingress,
        Some(ns) => Caller::Workload {
            namespace: ns,
            labels: &labels,
        },
    };
    mesh.route(caller, &req)
}

/// Where such a request goes: the host of its first destination and the
/// rule, or why none.
fn goes(
    mesh: &Mesh,
    from: Option<&str>,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> String {
    match targets(mesh, from, host, path, headers) {
        Routed::Route { targets, rule, .. } => format!(
            "{} by {}",
            targets.first().map_or("nothing", |t| t.host.as_str()),
            rule.map_or("default".to_owned(), |r| r.to_string())
        ),
        other => format!("{other:?}"),
    }
}

#[test]
fn rules_are_sorted_as_istiod_sorts_them_whatever_their_order() {
    // Written catch-all first: istiod still tries the header match first.
    let m = mesh(&format!(
        "{SERVICES}---\n{}",
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: forecast-route, namespace: weather}
spec:
  parentRefs: [{group: "", kind: Service, name: forecast}]
  rules:
    - backendRefs: [{name: forecast-v1, port: 3002}]
    - matches: [{headers: [{name: x-lane, value: v2}]}]
      backendRefs: [{name: forecast-v2, port: 3002}]
    - matches: [{path: {type: PathPrefix, value: /api/}}]
      backendRefs: [{name: forecast-v2, port: 3002}]
"#
    ));
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    let at = |path, h: &[(&str, &str)]| goes(&m, Some("weather"), "forecast:3002", path, h);
    assert_eq!(
        at("/x", &[("x-lane", "v2")]),
        "forecast-v2.weather.svc.cluster.local by forecast-route rules[1]"
    );
    assert_eq!(
        at("/x", &[]),
        "forecast-v1.weather.svc.cluster.local by forecast-route rules[0]"
    );
    // The longer prefix wins, and it matches whole path segments only.
    assert_eq!(
        at("/api/days", &[("x-lane", "v2")]),
        "forecast-v2.weather.svc.cluster.local by forecast-route rules[2]"
    );
    assert_eq!(
        at("/api", &[]),
        "forecast-v2.weather.svc.cluster.local by forecast-route rules[2]"
    );
    assert_eq!(
        at("/apis", &[]),
        "forecast-v1.weather.svc.cluster.local by forecast-route rules[0]"
    );
}

#[test]
fn an_edge_route_attaches_where_the_listener_allows_its_namespace() {
    let route = |ns: &str| {
        format!(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: edge, namespace: {ns}}}
spec:
  parentRefs: [{{name: gw, namespace: istio-system, sectionName: http}}]
  rules:
    - filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{remove: [baggage]}}}}]
      backendRefs: [{{name: forecast-v1, namespace: weather, port: 3002}}]
"#
        )
    };
    let m = mesh(&format!("{SERVICES}---\n{}", route("weather")));
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    assert_eq!(
        goes(&m, None, "weather.example", "/", &[]),
        "forecast-v1.weather.svc.cluster.local by edge rules[0]"
    );
    let m = mesh(&format!("{SERVICES}---\n{}", route("elsewhere")));
    assert!(
        m.errors
            .iter()
            .any(|e| e.kind == "HTTPRoute" && e.message.contains("allowedRoutes")),
        "{:?}",
        m.errors
    );
    assert_eq!(
        goes(&m, None, "weather.example", "/", &[]),
        "NoRoute(NoVirtualService)"
    );
}

#[test]
fn weight_zero_is_dropped_and_a_missing_backend_answers_500() {
    let m = mesh(&format!(
        "{SERVICES}---\n{}",
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: forecast-route, namespace: weather}
spec:
  parentRefs: [{group: "", kind: Service, name: forecast}]
  rules:
    - matches: [{path: {type: Exact, value: /gone}}]
      backendRefs: [{name: nowhere, port: 3002}]
    - backendRefs: [{name: forecast-v1, port: 3002, weight: 0}, {name: forecast-v2, port: 3002, weight: 7}]
"#
    ));
    match targets(&m, Some("weather"), "forecast:3002", "/", &[]) {
        Routed::Route { targets, .. } => {
            assert_eq!(targets.len(), 1);
            assert_eq!(targets[0].host, "forecast-v2.weather.svc.cluster.local");
            assert_eq!(targets[0].weight, 100);
        }
        other => panic!("{other:?}"),
    }
    match targets(&m, Some("weather"), "forecast:3002", "/gone", &[]) {
        Routed::Route { targets, .. } => {
            let p = targets[0].problem.as_ref().unwrap();
            assert_eq!((p.status(), p.flag()), (500, "NC"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_ingress_takes_the_most_specific_host_and_never_falls_back_to_a_wildcard() {
    // Envoy picks the virtual host `h2.example.com` over `*`; a request its
    // routes do not match is 404, even where the `*` route would take it.
    let edge = |name: &str, hostnames: &str, path: &str| {
        format!(
            r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: weather}}
spec:
  parentRefs: [{{name: gw, namespace: istio-system}}]
  hostnames: {hostnames}
  rules:
    - matches: [{{path: {{type: Exact, value: {path}}}}}]
      backendRefs: [{{name: forecast-v2, port: 3002}}]
"#
        )
    };
    let gw = SERVICES.replace(
        "from: Selector, selector: {matchLabels: {kubernetes.io/metadata.name: weather}}",
        "from: All",
    );
    let m = mesh(&format!(
        "{gw}{}{}",
        edge("specific", "['h2.example.com']", "/only"),
        edge("any", "[]", "/")
    ));
    assert!(m.errors.is_empty(), "{:?}", m.errors);
    assert_eq!(
        goes(&m, None, "h2.example.com", "/only", &[]),
        "forecast-v2.weather.svc.cluster.local by specific rules[0]"
    );
    assert_eq!(
        goes(&m, None, "h2.example.com", "/", &[]),
        "NoRoute(NoRuleMatched(\"HTTPRoute weather/specific for h2.example.com\"))"
    );
    assert_eq!(
        goes(&m, None, "h3.example.com", "/", &[]),
        "forecast-v2.weather.svc.cluster.local by any rules[0]"
    );
}
