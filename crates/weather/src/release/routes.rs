//! The train's steps as Gateway API HTTPRoutes, for a release written in
//! Gateway API (`weather up --api gateway-api|ambient`, docs/lanes.md). No
//! route can match its caller there, so the lane rides in the request: the
//! edge route decides it (the A/B match, then the weights) and sets
//! `baggage: lane=TRAIN` on the new lane, removing any a client sent; every
//! next service of the train has a GAMMA route on its Service that sends the
//! lane to its new version (the Service `NAME-TO`), everyone else to the old.

use mesh::Manifests;
use serde_json::{Value, json};

use super::{phase::Phase, spec::Train};

/// The header the lane rides in, and the member that names it.
const BAGGAGE: &str = "baggage";

/// Whether the train's gateway is a Gateway API Gateway of the manifests, and
/// the train is to be applied as HTTPRoutes.
pub fn applies(train: &Train, m: &Manifests) -> bool {
    let (ns, name) = train.spec.spec.gateway.split_once('/').unwrap_or(("", ""));
    m.kube_gateways
        .iter()
        .any(|g| g.metadata.ns() == ns && g.metadata.name == name)
}

/// The Service of one version: `NAME-VERSION` (istio/gateway-api/base/).
pub fn version_service(name: &str, version: &str) -> String {
    format!("{name}-{version}")
}

/// The lane's member of `baggage`.
fn lane(train: &Train) -> String {
    format!("lane={}", train.name())
}

/// A regex that holds when `baggage` has the train's lane among its members.
fn lane_regex(train: &Train) -> String {
    format!(
        r"^(.*,)?\s*lane\s*=\s*{}\s*(;[^,]*)?(,.*)?$",
        // A train's name is a DNS name ([a-z0-9.-]): only `.` needs escaping.
        train.name().replace('.', r"\.")
    )
}

/// The HTTPRoute of the manifests the service is routed by (at the
/// Gateway for the first, on its Service for the others): its name is
/// kept, so applying the generated one replaces it.
fn existing<'a>(m: &'a Manifests, ns: &str, service: &str, edge: bool) -> Option<&'a str> {
    m.http_routes
        .iter()
        .find(|r| {
            r.metadata.ns() == ns
                && r.spec.parent_refs.iter().any(|p| {
                    if edge {
                        p.is_gateway()
                    } else {
                        p.is_service() && p.name == service
                    }
                })
                && (!edge
                    || r.spec.rules.iter().flatten().any(|rule| {
                        rule.backend_refs.iter().any(|b| {
                            b.name == service || b.name.starts_with(&format!("{service}-"))
                        })
                    }))
        })
        .map(|r| r.metadata.name.as_str())
}

/// A backendRef to `service`'s version, with what it does to the lane.
fn backend(name: &str, version: &str, port: u16, weight: u32, lane: Option<&str>) -> Value {
    let modifier = match lane {
        Some(l) => json!({"set": [{"name": BAGGAGE, "value": l}]}),
        None => json!({"remove": [BAGGAGE]}),
    };
    json!({
        "name": version_service(name, version),
        "port": port,
        "weight": weight,
        "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": modifier}],
    })
}

/// The train's A/B matches (Istio's `HTTPMatchRequest`) as Gateway API's:
/// header matches (exact or regex) and a path prefix or exact path.
fn gateway_api_matches(matches: &[Value]) -> Vec<Value> {
    matches
        .iter()
        .map(|m| {
            let mut out = serde_json::Map::new();
            if let Some(h) = m.get("headers").and_then(Value::as_object) {
                let headers: Vec<Value> = h
                    .iter()
                    .filter_map(|(name, sm)| {
                        let (kind, value) = if let Some(v) = sm.get("exact") {
                            ("Exact", v)
                        } else {
                            ("RegularExpression", sm.get("regex")?)
                        };
                        Some(json!({"name": name, "type": kind, "value": value}))
                    })
                    .collect();
                out.insert("headers".into(), Value::Array(headers));
            }
            if let Some(uri) = m.get("uri") {
                let path = match (uri.get("exact"), uri.get("prefix")) {
                    (Some(e), _) => json!({"type": "Exact", "value": e}),
                    (_, Some(p)) => json!({"type": "PathPrefix", "value": p}),
                    _ => json!({"type": "RegularExpression", "value": uri.get("regex")}),
                };
                out.insert("path".into(), path);
            }
            Value::Object(out)
        })
        .collect()
}

/// The port of Service `name` in the manifests (its first).
fn port(m: &Manifests, ns: &str, name: &str) -> u16 {
    m.services
        .iter()
        .find(|s| s.metadata.ns() == ns && s.metadata.name == name)
        .and_then(|s| s.spec.ports.first())
        .map_or(80, |p| p.port)
}

/// The HTTPRoutes of one step, as objects.
pub fn http_routes(train: &Train, m: &Manifests, phase: Phase) -> Vec<Value> {
    let ns = train.namespace();
    let (gw_ns, gw_name) = train.spec.spec.gateway.split_once('/').unwrap_or(("", ""));
    let (old, new) = phase.weights();
    let lane = lane(train);
    let mut out = Vec::new();
    for (i, s) in train.services().iter().enumerate() {
        let edge = i == 0;
        let p = port(m, ns, &s.name);
        let name = existing(m, ns, &s.name, edge)
            .map_or_else(|| format!("{}-route", s.name), str::to_owned);
        let parent = if edge {
            json!({"name": gw_name, "namespace": gw_ns})
        } else {
            json!({"group": "", "kind": "Service", "name": s.name})
        };
        // Everyone on one version: the edge takes any lane away.
        let all = |o: u32, n: u32| {
            json!({
                "name": format!("train-{}", if n == 100 { &s.to } else { &s.from }),
                "backendRefs": [
                    backend(&s.name, &s.from, p, o, None),
                    backend(&s.name, &s.to, p, n, None),
                ],
            })
        };
        let rules: Vec<Value> = match (edge, phase) {
            (_, Phase::Promote | Phase::Rollback) => vec![all(old, new)],
            // The edge decides the lane.
            (true, Phase::AB { .. }) => vec![
                json!({
                    "name": "train-match",
                    "matches": gateway_api_matches(&train.matches),
                    "backendRefs": [backend(&s.name, &s.to, p, 1, Some(&lane))],
                }),
                all(100, 0),
            ],
            (true, Phase::Weighted { .. }) => vec![json!({
                "name": "train-split",
                "backendRefs": [
                    backend(&s.name, &s.from, p, old, None),
                    backend(&s.name, &s.to, p, new, Some(&lane)),
                ],
            })],
            // Downstream, the lane in the request picks the version.
            (false, _) => vec![
                json!({
                    "name": "train-lane",
                    "matches": [{"headers": [{"name": BAGGAGE, "type": "RegularExpression", "value": lane_regex(train)}]}],
                    "backendRefs": [{"name": version_service(&s.name, &s.to), "port": p}],
                }),
                json!({
                    "name": format!("train-{}", s.from),
                    "backendRefs": [{"name": version_service(&s.name, &s.from), "port": p}],
                }),
            ],
        };
        out.push(json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": {"app.kubernetes.io/managed-by": "weather-release", "weather.example/train": train.name()},
            },
            "spec": {"parentRefs": [parent], "rules": rules},
        }));
    }
    out
}
