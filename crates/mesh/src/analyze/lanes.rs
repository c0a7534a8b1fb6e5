//! Where a release carried by the request (a lane in `baggage`, docs/lanes.md)
//! cannot hold, and where two APIs route one host:
//!
//! - WEA0017: a VirtualService and an HTTPRoute both route a Service in the
//!   mesh. A sidecar takes one of them only (istiod's order), a waypoint both,
//!   one after the other: which rules apply depends on the data plane.
//! - WEA0018: a route in the mesh matches `baggage`, but no route at the edge
//!   sets a value it matches: only a client could send it.
//! - WEA0019: a route in the mesh matches `baggage`, and an edge route lets a
//!   client's own `baggage` through (it neither sets nor removes it): a client
//!   can pick its lane.

use super::{Level, Object, Out};
use crate::{compile::MESH, headers::Ops};

pub const VS_AND_HTTPROUTE: &str = "WEA0017";
pub const LANE_NEVER_SET: &str = "WEA0018";
pub const CLIENT_PICKS_LANE: &str = "WEA0019";

/// The header that carries the lane.
const BAGGAGE: &str = "baggage";

/// The object a compiled rule came from, and the field of its `n`th part.
fn object(r: &crate::routing::RuleRef) -> Object<'_> {
    Object {
        kind: r.kind,
        namespace: &r.namespace,
        name: &r.virtual_service,
    }
}

fn field(r: &crate::routing::RuleRef) -> String {
    match r.kind {
        "HTTPRoute" => format!("spec.rules[{}]", r.index),
        _ => format!("spec.http[{}]", r.index),
    }
}

/// What `ops` does to `baggage`: `Some(values set)` when it sets or removes
/// it (a removal sets nothing), `None` when it leaves it alone.
fn baggage_ops(ops: &Ops) -> Option<Vec<String>> {
    let set: Vec<String> = ops
        .add
        .iter()
        .filter(|(k, _, append)| k == BAGGAGE && !append)
        .map(|(_, v, _)| v.clone())
        .collect();
    let removed = ops.remove.iter().any(|k| k == BAGGAGE);
    (removed || !set.is_empty()).then_some(set)
}

pub(super) fn check(out: &mut Out) {
    let mesh = out.mesh;
    // WEA0017: a Service routed by both APIs.
    for vs in mesh
        .virtual_services
        .iter()
        .filter(|v| !v.gateway_semantics)
    {
        if !vs.gateways.iter().any(|g| g == MESH) {
            continue;
        }
        for h in vs.hosts.iter().filter(|h| !h.contains('*')) {
            let routes: Vec<&str> = mesh
                .virtual_services
                .iter()
                .filter(|t| t.gateway_semantics && t.gateways.iter().any(|g| g == MESH))
                .filter(|t| t.hosts.contains(h))
                .flat_map(|t| t.rules.iter().map(|r| r.rule.virtual_service.as_str()))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if routes.is_empty() {
                continue;
            }
            let o = Object {
                kind: "VirtualService",
                namespace: &vs.namespace,
                name: &vs.name,
            };
            out.push(Level::Warning, VS_AND_HTTPROUTE, &o, "spec.hosts", format!(
                "HTTPRoute {} also routes {h}: a sidecar takes only one of them (the first in istiod's order), a waypoint both, one after the other; route each Service with one API",
                routes.join(", ")
            ));
        }
    }
    // The rules in the mesh that match the lane's header.
    let downstream: Vec<(&crate::compile::CompiledRule, usize)> = mesh
        .virtual_services
        .iter()
        .filter(|vs| vs.gateways.iter().any(|g| g == MESH))
        .flat_map(|vs| &vs.rules)
        .flat_map(|r| {
            r.matches
                .iter()
                .enumerate()
                .filter(|(_, m)| m.headers.iter().any(|(k, _)| k == BAGGAGE))
                .map(move |(j, _)| (r, j))
        })
        .collect();
    if downstream.is_empty() {
        return;
    }
    // What each edge rule does to `baggage`, per destination: its route's
    // and its own operations as Envoy applies them together.
    let edge: Vec<(&crate::compile::CompiledRule, Option<Vec<String>>)> = mesh
        .virtual_services
        .iter()
        .filter(|vs| vs.gateways.iter().any(|g| g != MESH))
        .flat_map(|vs| &vs.rules)
        .filter(|r| !r.broken)
        .flat_map(|r| {
            let lone = r.targets.len() == 1;
            let per_target: Vec<Option<Vec<String>>> = if r.targets.is_empty() {
                vec![baggage_ops(&r.policy.headers.request)]
            } else {
                r.targets
                    .iter()
                    .map(|t| {
                        let ops = crate::headers::effective(&r.policy.headers, &t.headers, lone);
                        baggage_ops(&ops.request)
                    })
                    .collect()
            };
            per_target.into_iter().map(move |b| (r, b))
        })
        .collect();
    let set: Vec<&str> = edge
        .iter()
        .flat_map(|(_, b)| b.iter().flatten().map(String::as_str))
        .collect();
    // WEA0018: a lane matched that the edge never sets.
    for (r, j) in &downstream {
        let Some((_, m)) = r.matches[*j].headers.iter().find(|(k, _)| k == BAGGAGE) else {
            continue;
        };
        if set.iter().any(|v| m.matches(v)) {
            continue;
        }
        let f = match r.rule.kind {
            "HTTPRoute" => format!("{}.matches", field(&r.rule)),
            _ => format!("{}.match[{j}].headers.baggage", field(&r.rule)),
        };
        let o = object(&r.rule);
        out.push(Level::Warning, LANE_NEVER_SET, &o, f, format!(
            "this route matches a lane in `baggage` that no edge route sets ({}): only a client could send it; set it at the edge (a RequestHeaderModifier, or headers.request.set) for the users of the lane",
            if set.is_empty() { "no edge route sets baggage".to_owned() } else { format!("the edge sets {}", set.join(" / ")) }
        ));
    }
    // WEA0019: an edge rule that lets a client's own lane through.
    let mut seen = std::collections::BTreeSet::new();
    for (r, b) in &edge {
        if b.is_some() || !seen.insert((&r.rule.namespace, &r.rule.virtual_service, r.rule.index)) {
            continue;
        }
        let (d, _) = downstream[0];
        let o = object(&r.rule);
        out.push(Level::Warning, CLIENT_PICKS_LANE, &o, field(&r.rule), format!(
            "a client's own `baggage` passes this edge route on, and {} {}/{} routes by it: a client can pick its lane; remove `baggage` here (or set it)",
            d.rule.kind, d.rule.namespace, d.rule.virtual_service
        ));
    }
}
