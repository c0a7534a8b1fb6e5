//! The routing model, one row per Istio rule, named after it, so each can be held
//! against Istio's documentation (VirtualService and DestinationRule reference,
//! Envoy's route matching) and, where the two differ, istiod's code: rows marked
//! `istiod:` follow the function named, in `istio.io/istio`
//! (`pilot/pkg/networking/core/route/route.go` unless said otherwise). Every row
//! loads a small cluster plus the row's own VirtualService and asks where one
//! request goes. Long because it is the table: one row per rule.

use mesh::{
    Manifests, Mesh,
    explain::{Destination, explain},
    model::Labels,
    routing::{Caller, Request},
};

const CLUSTER: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: forecast, namespace: weather}
spec: {selector: {app: forecast}, ports: [{name: http, port: 3002}]}
---
apiVersion: v1
kind: Service
metadata: {name: frontend, namespace: weather}
spec: {selector: {app: frontend}, ports: [{name: http, port: 3000}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: forecast, namespace: weather}
spec:
  host: forecast
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: frontend, namespace: weather}
spec:
  host: frontend
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: weather-gateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
"#;

fn deployment(app: &str, version: &str) -> String {
    format!(
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {app}-{version}, namespace: weather}}\nspec:\n  selector: {{matchLabels: {{app: {app}, version: {version}}}}}\n  template:\n    metadata: {{labels: {{app: {app}, version: {version}}}}}\n    spec: {{containers: [{{name: {app}, image: weather/{app}:{version}}}]}}\n"
    )
}

fn mesh(vs: &str) -> Mesh {
    let mut text = CLUSTER.to_owned();
    for (app, v) in [
        ("forecast", "v1"),
        ("forecast", "v2"),
        ("frontend", "v1"),
        ("frontend", "v2"),
    ] {
        text.push_str(&deployment(app, v));
    }
    if !vs.is_empty() {
        text.push_str("---\n");
        text.push_str(vs);
    }
    let mut m = Manifests::default();
    m.add_yaml("row.yaml", &text)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let mesh = Mesh::compile(&m);
    assert!(mesh.errors.is_empty(), "{:?}", mesh.errors);
    mesh
}

fn labels(version: &str) -> Labels {
    Labels::from([
        ("app".to_owned(), "frontend".to_owned()),
        ("version".to_owned(), version.to_owned()),
    ])
}

/// Who calls: `ingress`, or a frontend pod of the given version.
#[derive(Clone, Copy)]
enum From {
    Ingress,
    Frontend(&'static str),
}

struct Ask {
    from: From,
    authority: &'static str,
    path: &'static str,
    method: &'static str,
    headers: &'static [(&'static str, &'static str)],
}

const TO_FORECAST: Ask = Ask {
    from: From::Frontend("v1"),
    authority: "forecast:3002",
    path: "/forecast?city=beijing",
    method: "GET",
    headers: &[],
};

/// Outcome: (status, [(subset, weight)], rule).
type Outcome = (u16, Vec<(Option<&'static str>, u32)>, Option<&'static str>);

fn ask(mesh: &Mesh, a: &Ask) -> Outcome {
    let headers: Vec<(String, String)> = a
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let l;
    let caller = match a.from {
        From::Ingress => Caller::Ingress,
        From::Frontend(v) => {
            l = labels(v);
            Caller::Workload {
                namespace: "weather",
                labels: &l,
            }
        }
    };
    let req = Request {
        authority: a.authority,
        path: a.path,
        method: a.method,
        scheme: "http",
        headers: headers.as_slice(),
    };
    let e = explain(mesh, caller, &req);
    let dests = e
        .destinations
        .iter()
        .map(|Destination { subset, weight, .. }| {
            (subset.as_deref().map(|s| &*s.to_owned().leak()), *weight)
        })
        .collect();
    (e.status, dests, e.rule.map(|r| &*r.leak()))
}

fn to(subset: &'static str) -> Vec<(Option<&'static str>, u32)> {
    vec![(Some(subset), 100)]
}

const FORECAST_VS_HEAD: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: forecast-route, namespace: weather}\nspec:\n  hosts: [forecast]\n";

fn forecast_vs(body: &str) -> String {
    format!("{FORECAST_VS_HEAD}{body}")
}

struct Row {
    rule: &'static str,
    vs: String,
    ask: Ask,
    want: Outcome,
}

fn rows() -> Vec<Row> {
    let catch_all_v1 = "  - route: [{destination: {host: forecast, subset: v1}}]\n";
    let header_rule = |m: &str| {
        forecast_vs(&format!(
            "  http:\n  - match: [{{headers: {{user-agent: {m}}}}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}"
        ))
    };
    let ua = |v: &'static str| -> &'static [(&'static str, &'static str)] {
        Box::leak(Box::new([("user-agent", v)]))
    };
    vec![
        Row {
            rule: "virtualservice/gateways-absent-means-mesh",
            vs: forecast_vs("  http:\n  - route: [{destination: {host: forecast, subset: v2}}]\n"),
            ask: TO_FORECAST,
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            rule: "virtualservice/gateways-without-mesh-do-not-bind-sidecars",
            vs: forecast_vs("  gateways: [istio-system/weather-gateway]\n  http:\n  - route: [{destination: {host: forecast, subset: v2}}]\n"),
            ask: TO_FORECAST,
            want: (200, vec![(None, 100)], None),
        },
        Row {
            rule: "virtualservice/gateways-with-mesh-bind-sidecars-too",
            vs: forecast_vs("  gateways: [mesh, istio-system/weather-gateway]\n  http:\n  - route: [{destination: {host: forecast, subset: v2}}]\n"),
            ask: TO_FORECAST,
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            rule: "match/gateways-overrides-the-virtualservice-gateways",
            vs: forecast_vs(&format!("  gateways: [mesh, istio-system/weather-gateway]\n  http:\n  - match: [{{gateways: [istio-system/weather-gateway]}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: TO_FORECAST,
            want: (200, to("v1"), Some("forecast-route http[1]")),
        },
        Row {
            rule: "http/first-matching-rule-wins",
            vs: forecast_vs("  http:\n  - route: [{destination: {host: forecast, subset: v2}}]\n  - route: [{destination: {host: forecast, subset: v1}}]\n"),
            ask: TO_FORECAST,
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            rule: "match/entries-are-ored",
            vs: forecast_vs(&format!("  http:\n  - match: [{{uri: {{exact: /nope}}}}, {{uri: {{prefix: /forecast}}}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: TO_FORECAST,
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            rule: "match/fields-of-one-entry-are-anded",
            vs: forecast_vs(&format!("  http:\n  - match: [{{uri: {{prefix: /forecast}}, headers: {{x-canary: {{exact: \"1\"}}}}}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: TO_FORECAST,
            want: (200, to("v1"), Some("forecast-route http[1]")),
        },
        Row {
            rule: "headers/exact",
            vs: header_rule("{exact: canary}"),
            ask: Ask { headers: ua("canary"), ..TO_FORECAST },
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            rule: "headers/exact-is-not-a-prefix",
            vs: header_rule("{exact: canary}"),
            ask: Ask { headers: ua("canary2"), ..TO_FORECAST },
            want: (200, to("v1"), Some("forecast-route http[1]")),
        },
        Row {
            rule: "headers/prefix",
            vs: header_rule("{prefix: Mozilla/}"),
            ask: Ask { headers: ua("Mozilla/5.0 (X11)"), ..TO_FORECAST },
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            rule: "headers/regex-must-match-the-whole-value",
            vs: header_rule("{regex: Chrome}"),
            ask: Ask { headers: ua("Mozilla/5.0 Chrome/120.0"), ..TO_FORECAST },
            want: (200, to("v1"), Some("forecast-route http[1]")),
        },
        Row {
            rule: "headers/regex-with-wildcards-matches-inside",
            vs: header_rule(r"{regex: '.*(Chrome/([\d.]+)).*'}"),
            ask: Ask { headers: ua("Mozilla/5.0 Chrome/120.0.6099.71 Safari/537.36"), ..TO_FORECAST },
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            rule: "headers/names-are-case-insensitive",
            vs: header_rule("{exact: canary}"),
            ask: Ask { headers: &[("User-Agent", "canary")], ..TO_FORECAST },
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            rule: "headers/absent-header-does-not-match",
            vs: header_rule("{regex: '.*'}"),
            ask: TO_FORECAST,
            want: (200, to("v1"), Some("forecast-route http[1]")),
        },
        Row {
            // istiod: TranslateRouteMatch sets treat_missing_header_as_empty on
            // an inverted (withoutHeaders) match that is not a presence match.
            rule: "withoutHeaders/a-missing-header-counts-as-empty",
            vs: forecast_vs(&format!("  http:\n  - match: [{{withoutHeaders: {{x-debug: {{exact: ''}}}}}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: TO_FORECAST,
            want: (200, to("v1"), Some("forecast-route http[1]")),
        },
        Row {
            // istiod: an empty StringMatch is a presence match
            // (canBeConvertedToPresentMatch).
            rule: "headers/an-empty-match-is-presence",
            vs: header_rule("{}"),
            ask: Ask { headers: ua("anything"), ..TO_FORECAST },
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            // istiod: canBeConvertedToPresentMatch makes `regex: "*"` a
            // presence match, and its validation lets it in under
            // withoutHeaders: the rule takes requests WITHOUT the header.
            rule: "withoutHeaders/regex-star-is-absence",
            vs: forecast_vs(&format!("  http:\n  - match: [{{withoutHeaders: {{x-debug: {{regex: '*'}}}}}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: Ask { headers: &[("x-debug", "")], ..TO_FORECAST },
            want: (200, to("v1"), Some("forecast-route http[1]")),
        },
        Row {
            rule: "withoutHeaders/regex-star-takes-requests-without-the-header",
            vs: forecast_vs(&format!("  http:\n  - match: [{{withoutHeaders: {{x-debug: {{regex: '*'}}}}}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: TO_FORECAST,
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            // Envoy's header map merges user-agent as it arrives; an empty
            // value adds nothing (measured: conformance::headers).
            rule: "headers/a-repeated-inline-header-skips-empty-values",
            vs: header_rule("{exact: canary}"),
            ask: Ask { headers: &[("user-agent", ""), ("User-Agent", "canary")], ..TO_FORECAST },
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            rule: "headers/a-repeated-header-is-read-joined-with-commas",
            vs: forecast_vs(&format!("  http:\n  - match: [{{headers: {{x-canary: {{exact: ',1'}}}}}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: Ask { headers: &[("x-canary", ""), ("x-canary", "1")], ..TO_FORECAST },
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            // Envoy ignores case_sensitive for a safe_regex path match.
            rule: "uri/ignoreUriCase-does-not-apply-to-a-regex",
            vs: forecast_vs(&format!("  http:\n  - match: [{{uri: {{regex: '/FORECAST'}}, ignoreUriCase: true}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: TO_FORECAST,
            want: (200, to("v1"), Some("forecast-route http[1]")),
        },
        Row {
            rule: "withoutHeaders/excludes-matching-requests",
            vs: forecast_vs(&format!("  http:\n  - match: [{{withoutHeaders: {{x-debug: {{exact: \"1\"}}}}}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: Ask { headers: &[("x-debug", "1")], ..TO_FORECAST },
            want: (200, to("v1"), Some("forecast-route http[1]")),
        },
        Row {
            rule: "uri/exact-compares-the-path-without-query",
            vs: forecast_vs(&format!("  http:\n  - match: [{{uri: {{exact: /forecast}}}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: TO_FORECAST,
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            rule: "uri/ignoreUriCase",
            vs: forecast_vs(&format!("  http:\n  - match: [{{uri: {{exact: /FORECAST}}, ignoreUriCase: true}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: TO_FORECAST,
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            rule: "uri/regex-whole-path",
            vs: forecast_vs(&format!("  http:\n  - match: [{{uri: {{regex: /fore}}}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: TO_FORECAST,
            want: (200, to("v1"), Some("forecast-route http[1]")),
        },
        Row {
            rule: "method/exact",
            vs: forecast_vs(&format!("  http:\n  - match: [{{method: {{exact: POST}}}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: TO_FORECAST,
            want: (200, to("v1"), Some("forecast-route http[1]")),
        },
        Row {
            rule: "queryParams/exact",
            vs: forecast_vs(&format!("  http:\n  - match: [{{queryParams: {{city: {{exact: beijing}}}}}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: TO_FORECAST,
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            rule: "sourceLabels/holds-when-the-caller-has-every-label",
            vs: forecast_vs(&format!("  http:\n  - match: [{{sourceLabels: {{version: v2}}}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: Ask { from: From::Frontend("v2"), ..TO_FORECAST },
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            rule: "sourceLabels/fails-when-a-label-differs",
            vs: forecast_vs(&format!("  http:\n  - match: [{{sourceLabels: {{version: v2}}}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: TO_FORECAST,
            want: (200, to("v1"), Some("forecast-route http[1]")),
        },
        Row {
            rule: "sourceLabels/fails-when-a-label-is-missing",
            vs: forecast_vs(&format!("  http:\n  - match: [{{sourceLabels: {{version: v2, track: canary}}}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: Ask { from: From::Frontend("v2"), ..TO_FORECAST },
            want: (200, to("v1"), Some("forecast-route http[1]")),
        },
        Row {
            // istiod: sourceMatchHTTP compares sourceLabels with the labels of
            // the proxy it builds routes for, the gateway's pod as well.
            rule: "sourceLabels/at-a-gateway-compares-the-gateway-pods-own-labels",
            vs: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: frontend-route, namespace: weather}\nspec:\n  hosts: ['*']\n  gateways: [istio-system/weather-gateway]\n  http:\n  - match: [{sourceLabels: {istio: ingressgateway}}]\n    route: [{destination: {host: frontend, subset: v2}}]\n  - route: [{destination: {host: frontend, subset: v1}}]\n".into(),
            ask: Ask { from: From::Ingress, authority: "localhost:8080", path: "/", method: "GET", headers: &[] },
            want: (200, to("v2"), Some("frontend-route http[0]")),
        },
        Row {
            // istiod: sourceMatchHTTP looks at sourceLabels only when the match
            // names no gateways.
            rule: "sourceLabels/not-looked-at-when-the-match-names-gateways",
            vs: forecast_vs(&format!("  http:\n  - match: [{{gateways: [mesh], sourceLabels: {{version: v9}}}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: TO_FORECAST,
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            // istiod: BuildHTTPRoutesForVirtualService returns "no routes
            // matched" when every match is pruned for the proxy;
            // buildSidecarVirtualHostsForVirtualService then gives no virtual
            // host and BuildSidecarVirtualHostWrapper routes the Service by
            // default, over every endpoint.
            rule: "sourceLabels/every-rule-pruned-means-the-default-route",
            vs: forecast_vs("  http:\n  - match: [{sourceLabels: {version: v2}}]\n    route: [{destination: {host: forecast, subset: v2}}]\n"),
            ask: TO_FORECAST,
            want: (200, vec![(None, 100)], None),
        },
        Row {
            rule: "sourceNamespace/another-namespace-is-pruned",
            vs: forecast_vs(&format!("  http:\n  - match: [{{sourceNamespace: other}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: Ask { from: From::Frontend("v2"), ..TO_FORECAST },
            want: (200, to("v1"), Some("forecast-route http[1]")),
        },
        Row {
            rule: "gateway/a-virtualservice-bound-to-the-gateway-routes-ingress-traffic",
            vs: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: frontend-route, namespace: weather}\nspec:\n  hosts: ['*']\n  gateways: [istio-system/weather-gateway]\n  http:\n  - match: [{headers: {cookie: {regex: '^(.*;\\s*)?user=tester(\\s*;.*)?$'}}}]\n    route: [{destination: {host: frontend, subset: v2}}]\n  - route: [{destination: {host: frontend, subset: v1}}]\n".into(),
            ask: Ask { from: From::Ingress, authority: "localhost:8080", path: "/", method: "GET", headers: &[("cookie", "_ga=1; user=tester")] },
            want: (200, to("v2"), Some("frontend-route http[0]")),
        },
        Row {
            rule: "gateway/no-virtualservice-for-the-gateway-is-404-NR",
            vs: String::new(),
            ask: Ask { from: From::Ingress, authority: "localhost:8080", path: "/", method: "GET", headers: &[] },
            want: (404, vec![], None),
        },
        Row {
            rule: "weights/a-lone-destination-takes-100",
            vs: forecast_vs("  http:\n  - route: [{destination: {host: forecast, subset: v2}}]\n"),
            ask: TO_FORECAST,
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            // istiod: applyHTTPRouteDestination makes one destination a plain
            // cluster route; its weight is not read.
            rule: "weights/a-lone-destination-with-weight-0-still-takes-all",
            vs: forecast_vs("  http:\n  - route: [{destination: {host: forecast, subset: v2}, weight: 0}]\n"),
            ask: TO_FORECAST,
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            rule: "weights/split-as-configured",
            vs: forecast_vs("  http:\n  - route:\n    - {destination: {host: forecast, subset: v1}, weight: 80}\n    - {destination: {host: forecast, subset: v2}, weight: 20}\n"),
            ask: TO_FORECAST,
            want: (200, vec![(Some("v1"), 80), (Some("v2"), 20)], Some("forecast-route http[0]")),
        },
        Row {
            rule: "host-without-virtualservice/balanced-over-all-endpoints",
            vs: String::new(),
            ask: TO_FORECAST,
            want: (200, vec![(None, 100)], None),
        },
        Row {
            rule: "host/fully-qualified-names-address-the-same-service",
            vs: forecast_vs("  http:\n  - route: [{destination: {host: forecast.weather.svc.cluster.local, subset: v2}}]\n"),
            ask: Ask { authority: "forecast.weather.svc.cluster.local:3002", ..TO_FORECAST },
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            // istiod: ResolveShortnameToFQDN (pilot/pkg/model/config.go) expands
            // only a name without a dot; `forecast.weather` names no Service, so
            // the VirtualService does not bind forecast's virtual host.
            rule: "host/a-name-with-a-dot-is-not-expanded-in-objects",
            vs: forecast_vs("  http:\n  - route: [{destination: {host: forecast, subset: v2}}]\n").replace("hosts: [forecast]", "hosts: [forecast.weather]"),
            ask: TO_FORECAST,
            want: (200, vec![(None, 100)], None),
        },
        Row {
            // Envoy's QueryParameterMatcher compares the name exactly.
            rule: "queryParams/names-are-case-sensitive",
            vs: forecast_vs(&format!("  http:\n  - match: [{{queryParams: {{City: {{exact: beijing}}}}}}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n{catch_all_v1}")),
            ask: TO_FORECAST,
            want: (200, to("v1"), Some("forecast-route http[1]")),
        },
        Row {
            // istiod: separateVSHostsAndServices looks the exact host up first;
            // mostSpecificWildcardVsIndex leaves a wildcard to the most
            // specific VirtualService.
            rule: "host/an-exact-host-wins-over-a-wildcard-read-first",
            vs: format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: any-route, namespace: weather}}\nspec:\n  hosts: ['*.weather.svc.cluster.local']\n  http:\n  - route: [{{destination: {{host: forecast, subset: v1}}}}]\n---\n{}", forecast_vs("  http:\n  - route: [{destination: {host: forecast, subset: v2}}]\n")),
            ask: TO_FORECAST,
            want: (200, to("v2"), Some("forecast-route http[0]")),
        },
        Row {
            rule: "no-rule-matches/404-NR",
            vs: forecast_vs("  http:\n  - match: [{uri: {exact: /nope}}]\n    route: [{destination: {host: forecast, subset: v2}}]\n"),
            ask: TO_FORECAST,
            want: (404, vec![], None),
        },
        Row {
            rule: "subset-not-defined/503-NC",
            vs: forecast_vs("  http:\n  - route: [{destination: {host: forecast, subset: v9}}]\n"),
            ask: TO_FORECAST,
            want: (503, vec![], Some("forecast-route http[0]")),
        },
        Row {
            rule: "subset-without-pods/503-UH",
            vs: forecast_vs("  http:\n  - route: [{destination: {host: forecast, subset: v3}}]\n"),
            ask: TO_FORECAST,
            want: (503, vec![], Some("forecast-route http[0]")),
        },
        Row {
            // istiod: a sidecar's route configuration ends with the `allow_any`
            // virtual host to PassthroughCluster (outboundTrafficPolicy
            // ALLOW_ANY, the default); checked against Envoy by the
            // conformance test.
            rule: "host/not-a-service-passes-through",
            vs: String::new(),
            ask: Ask { authority: "weather-nowhere:3002", ..TO_FORECAST },
            want: (200, vec![], None),
        },
        Row {
            rule: "host/a-port-the-service-lacks-passes-through",
            vs: String::new(),
            ask: Ask { authority: "forecast:3000", ..TO_FORECAST },
            want: (200, vec![], None),
        },
        Row {
            // istiod: VirtualServicesForGateway looks from the gateway pod's
            // namespace, istio-system: `.` hides it there.
            rule: "exportTo/a-gateway-sees-only-what-is-exported-to-its-namespace",
            vs: "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: frontend-route, namespace: weather}\nspec:\n  exportTo: ['.']\n  hosts: ['*']\n  gateways: [istio-system/weather-gateway]\n  http:\n  - route: [{destination: {host: frontend, subset: v2}}]\n".into(),
            ask: Ask { from: From::Ingress, authority: "localhost:8080", path: "/", method: "GET", headers: &[] },
            want: (404, vec![], None),
        },
        Row {
            rule: "exportTo/a-sidecar-does-not-see-a-virtualservice-of-another-namespace",
            vs: forecast_vs("  exportTo: [istio-system]\n  http:\n  - route: [{destination: {host: forecast, subset: v2}}]\n"),
            ask: TO_FORECAST,
            want: (200, vec![(None, 100)], None),
        },
        Row {
            // istiod: a proxy finds a DestinationRule of another namespace only
            // if it is exported to its own; without it, no subset cluster.
            rule: "exportTo/a-destinationrule-not-exported-to-the-gateway-leaves-it-no-subset",
            vs: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: frontend, namespace: weather}\nspec:\n  exportTo: ['.']\n  host: frontend\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: frontend-route, namespace: weather}\nspec:\n  exportTo: ['.', istio-system]\n  hosts: ['*']\n  gateways: [istio-system/weather-gateway]\n  http:\n  - route: [{destination: {host: frontend, subset: v2}}]\n".into(),
            ask: Ask { from: From::Ingress, authority: "localhost:8080", path: "/", method: "GET", headers: &[] },
            want: (503, vec![], Some("frontend-route http[0]")),
        },
    ]
}

#[test]
fn routing_rules() {
    let mut failures = Vec::new();
    for row in rows() {
        let got = ask(&mesh(&row.vs), &row.ask);
        if got != row.want {
            failures.push(format!("{}: want {:?}, got {:?}", row.rule, row.want, got));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// What istiod's validating webhook refuses (`validateHTTPRouteMatchRequest`)
/// is an error naming the field, never a rule that silently never matches.
#[test]
fn matches_istiods_validation_refuses_are_errors_naming_the_field() {
    let long = format!("'{}'", "a".repeat(1025));
    for (matched, field, says) in [
        (
            "{headers: {x-a: {regex: '*'}}}",
            "headers.x-a.regex",
            "regex \"*\" does not compile",
        ),
        (
            "{queryParams: {a: {regex: '*'}}}",
            "queryParams.a.regex",
            "does not compile",
        ),
        (
            "{headers: {x-a: {prefix: ''}}}",
            "headers.x-a.prefix",
            "\"headers\": prefix string match should not be empty",
        ),
        (
            "{method: {prefix: ''}}",
            "method.prefix",
            "\"method\": prefix string match should not be empty",
        ),
        (
            "{headers: {x-a: {regex: ''}}}",
            "headers.x-a.regex",
            "regex string match should not be empty",
        ),
        (
            "{uri: {regex: ''}}",
            "uri.regex",
            "\"uri\": regex string match should not be empty",
        ),
        (
            &format!("{{uri: {{regex: {long}}}}}"),
            "uri.regex",
            "regex is too large, max length allowed is 1024",
        ),
        ("{uri: {regex: '('}}", "uri.regex", "does not compile"),
    ] {
        let vs = forecast_vs(&format!(
            "  http:\n  - match: [{matched}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n  - route: [{{destination: {{host: forecast, subset: v1}}}}]\n"
        ));
        let mut m = Manifests::default();
        m.add_yaml("row.yaml", &format!("{CLUSTER}---\n{vs}"))
            .unwrap();
        let errors = Mesh::compile(&m).errors;
        assert_eq!(errors.len(), 1, "{matched}: {errors:?}");
        assert_eq!(
            errors[0].field,
            format!("http[0].match[0].{field}"),
            "{matched}"
        );
        assert!(
            errors[0]
                .message
                .starts_with("istiod's validation refuses the object: ")
                && errors[0].message.contains(says),
            "{matched}: {}",
            errors[0].message
        );
    }
    // What it lets in: an empty uri prefix, `regex: "*"` under withoutHeaders.
    for allowed in [
        "{uri: {prefix: ''}}",
        "{withoutHeaders: {x-a: {regex: '*'}}}",
    ] {
        let vs = forecast_vs(&format!(
            "  http:\n  - match: [{allowed}]\n    route: [{{destination: {{host: forecast, subset: v2}}}}]\n"
        ));
        let mut m = Manifests::default();
        m.add_yaml("row.yaml", &format!("{CLUSTER}---\n{vs}"))
            .unwrap();
        assert!(Mesh::compile(&m).errors.is_empty(), "{allowed}");
    }
}

#[test]
fn a_subset_resolves_to_the_pods_with_its_labels() {
    let m = mesh(&forecast_vs(
        "  http:\n  - route: [{destination: {host: forecast, subset: v2}}]\n",
    ));
    let l = labels("v1");
    let req = Request {
        authority: "forecast:3002",
        path: "/",
        method: "GET",
        scheme: "http",
        headers: &[][..],
    };
    match m.route(
        Caller::Workload {
            namespace: "weather",
            labels: &l,
        },
        &req,
    ) {
        mesh::Routed::Route { targets, .. } => {
            let pods: Vec<&str> = targets[0]
                .endpoints
                .iter()
                .map(|&i| m.workloads[i].name.as_str())
                .collect();
            assert_eq!(pods, ["forecast-v2"]);
        }
        other => panic!("{other:?}"),
    }
    let none = mesh("");
    match none.route(
        Caller::Workload {
            namespace: "weather",
            labels: &l,
        },
        &req,
    ) {
        mesh::Routed::Route {
            targets,
            rule: None,
            ..
        } => {
            let pods: Vec<&str> = targets[0]
                .endpoints
                .iter()
                .map(|&i| none.workloads[i].name.as_str())
                .collect();
            assert_eq!(pods, ["forecast-v1", "forecast-v2"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn explanations_say_why_there_is_no_route() {
    let m = mesh(&forecast_vs(
        "  http:\n  - route: [{destination: {host: forecast, subset: v9}}]\n",
    ));
    let l = labels("v1");
    let req = Request {
        authority: "forecast:3002",
        path: "/",
        method: "GET",
        scheme: "http",
        headers: &[][..],
    };
    let e = explain(
        &m,
        Caller::Workload {
            namespace: "weather",
            labels: &l,
        },
        &req,
    );
    assert_eq!(
        e.reason.as_deref(),
        Some("no DestinationRule defines subset v9 of forecast")
    );
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["destinations"], serde_json::json!([]));
    assert_eq!(json["rule"], "forecast-route http[0]");
}
