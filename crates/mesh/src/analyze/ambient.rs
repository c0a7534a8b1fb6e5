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

use super::{AMBIENT_DROPS_ROUTES, Level, Object, Out};
pub use crate::ambient::{DATAPLANE_MODE, USE_WAYPOINT};
use crate::compile::MESH;

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
