//! What a release that rests on the caller's pod labels loses in ambient mode
//! (a namespace labelled `istio.io/dataplane-mode: ambient`), where no sidecar
//! routes the call:
//!
//! - with a waypoint (`istio.io/use-waypoint` on the namespace or the
//!   Service), the waypoint applies the destination's VirtualService but drops
//!   every match that has `sourceLabels` (`waypointInboundRoute` in
//!   `pilot/pkg/networking/core/listener_waypoint.go`; istio #51565): a rule
//!   left with no match never applies, and its callers fall to the next rule;
//! - without one, ztunnel carries the traffic at L4 and no http route of the
//!   VirtualService applies at all.
//!
//! And what an AuthorizationPolicy written for sidecars becomes there: one
//! that selects pods (no `targetRefs`) is enforced by ztunnel, which has no
//! HTTP (`convertAuthorizationPolicy` in
//! `pilot/pkg/serviceregistry/ambient/authorization.go`): a rule of an ALLOW
//! policy with an HTTP attribute is dropped, so it never allows; one of a
//! DENY policy is kept without its HTTP attributes, so it denies more; a
//! CUSTOM or AUDIT policy is not enforced at all.

use super::{AMBIENT_DROPS_ROUTES, Level, Object, Out, ZTUNNEL_DROPS_HTTP_RULES};
pub use crate::ambient::{DATAPLANE_MODE, USE_WAYPOINT};
use crate::compile::MESH;
use crate::model::{AuthzRule, Operation, Source};

pub(super) fn check(out: &mut Out) {
    let (m, mesh) = (out.m, out.mesh);
    let ambient = |ns: &str| crate::ambient::ambient_namespace(m, ns);
    // The waypoint the labels name, even one that does not exist yet.
    let waypoint = |svc: usize| crate::ambient::waypoint_label(m, &mesh.services[svc]);
    for (vs, c) in m.virtual_services.iter().zip(&mesh.virtual_services) {
        if !c.gateways.iter().any(|g| g == MESH) {
            continue;
        }
        let o = Object::of("VirtualService", &vs.metadata);
        for h in &c.hosts {
            let Some(svc) = mesh.service(h) else { continue };
            let ns = &mesh.services[svc].namespace;
            if !ambient(ns) {
                continue;
            }
            let name = &mesh.services[svc].name;
            let Some(w) = waypoint(svc) else {
                out.push(Level::Warning, AMBIENT_DROPS_ROUTES, &o, "spec.http", format!(
                    "namespace {ns} is ambient and Service {name} uses no waypoint ({USE_WAYPOINT}): ztunnel carries its traffic at L4, so no http route of this VirtualService applies in the mesh"
                ));
                continue;
            };
            for (i, r) in vs.spec.http.iter().enumerate() {
                let dropped: Vec<usize> = r
                    .matches
                    .iter()
                    .enumerate()
                    .filter(|(_, hm)| !hm.source_labels.is_empty())
                    .map(|(j, _)| j)
                    .collect();
                let all = !r.matches.is_empty() && dropped.len() == r.matches.len();
                for j in dropped {
                    let labels: Vec<String> = r.matches[j]
                        .source_labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    let then = if all {
                        "; the rule is left with no match and never applies, so the calls it was for fall to the next rule"
                    } else {
                        ""
                    };
                    out.push(Level::Warning, AMBIENT_DROPS_ROUTES, &o, format!("spec.http[{i}].match[{j}].sourceLabels"), format!(
                        "namespace {ns} is ambient: waypoint {w} applies this route to {name} and drops every match with sourceLabels ({}: istio #51565){then}; carry the lane in the request instead (a header the edge sets and every service passes on)",
                        labels.join(", ")
                    ));
                }
            }
        }
    }
}

/// The HTTP attributes of an operation ztunnel cannot match (istiod's
/// `httpOperations`).
fn http_operations(op: &Operation) -> impl Iterator<Item = &'static str> + '_ {
    [
        ("hosts", &op.hosts),
        ("notHosts", &op.not_hosts),
        ("methods", &op.methods),
        ("notMethods", &op.not_methods),
        ("paths", &op.paths),
        ("notPaths", &op.not_paths),
    ]
    .into_iter()
    .filter(|(_, v)| v.as_ref().is_some_and(|v| !v.is_empty()))
    .map(|(name, _)| name)
}

/// The HTTP attributes of a source (istiod's `httpSources`).
fn http_sources(s: &Source) -> impl Iterator<Item = &'static str> + '_ {
    [
        ("remoteIpBlocks", &s.remote_ip_blocks),
        ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
        ("requestPrincipals", &s.request_principals),
        ("notRequestPrincipals", &s.not_request_principals),
    ]
    .into_iter()
    .filter(|(_, v)| v.as_ref().is_some_and(|v| !v.is_empty()))
    .map(|(name, _)| name)
}

/// The `when` keys ztunnel can match (istiod's `l4WhenAttributes`).
const L4_WHEN: [&str; 5] = [
    "source.ip",
    "source.namespace",
    "source.principal",
    "destination.ip",
    "destination.port",
];

/// What of `rule` ztunnel cannot match, sorted, each named once.
fn http_attributes(rule: &AuthzRule) -> Vec<String> {
    let mut found: Vec<String> = rule
        .to
        .iter()
        .flat_map(|t| http_operations(&t.operation))
        .chain(rule.from.iter().flat_map(|f| http_sources(&f.source)))
        .map(str::to_owned)
        .chain(
            rule.when
                .iter()
                .filter(|c| !L4_WHEN.contains(&c.key.as_str()))
                .map(|c| c.key.clone()),
        )
        .collect();
    found.sort();
    found.dedup();
    found
}

/// AuthorizationPolicies that ztunnel enforces, in an ambient namespace (or
/// the root namespace, when one is ambient), and what it makes of them.
pub(super) fn policies(out: &mut Out) {
    let m = out.m;
    let ambient = |ns: &str| crate::ambient::ambient_namespace(m, ns);
    let any_ambient = m.namespaces.iter().any(|n| ambient(&n.metadata.name));
    for ap in &m.authorization_policies {
        let ns = ap.metadata.ns();
        let applies = ambient(ns) || (ns == crate::terms::ROOT_NAMESPACE && any_ambient);
        if !applies || ap.spec.target_ref.is_some() || ap.spec.target_refs.is_some() {
            continue;
        }
        let o = Object::of("AuthorizationPolicy", &ap.metadata);
        let action = ap.spec.action.as_deref().unwrap_or("ALLOW");
        if action != "ALLOW" && action != "DENY" {
            out.push(Level::Warning, ZTUNNEL_DROPS_HTTP_RULES, &o, "spec.action", format!(
                "namespace {ns} is ambient: ztunnel enforces a policy with no targetRefs and does not support the {action} action, so nothing enforces this policy; attach it to the waypoint with targetRefs"
            ));
            continue;
        }
        for (i, rule) in ap.spec.rules.iter().flatten().enumerate() {
            let found = http_attributes(rule);
            if found.is_empty() {
                continue;
            }
            let then = if action == "ALLOW" {
                "within an ALLOW policy the rule is left out, so it allows nothing (stricter than written: the calls it was for are refused)"
            } else {
                "a DENY policy's rule is enforced without them, so it denies more than written"
            };
            out.push(Level::Warning, ZTUNNEL_DROPS_HTTP_RULES, &o, format!("spec.rules[{i}]"), format!(
                "namespace {ns} is ambient: ztunnel enforces this policy (it selects pods, no targetRefs) and does not support HTTP attributes (found: {}); {then}; attach the rule to the waypoint with targetRefs",
                found.join(", ")
            ));
        }
    }
}
