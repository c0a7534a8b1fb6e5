//! Ambient mode, as istiod programs it (docs/lanes.md, "Ambient"): a
//! namespace labelled `istio.io/dataplane-mode: ambient` has no sidecars;
//! ztunnel carries its pods' calls at L4. A Service that uses a waypoint
//! (`istio.io/use-waypoint` on the Service or its namespace, naming a Gateway
//! of class `istio-waypoint` there) has its L7 routes applied by that
//! waypoint, for every caller (`buildWaypointInboundHTTPRouteConfig` in
//! `pilot/pkg/networking/core/listener_waypoint.go`):
//!
//! - the VirtualServices (HTTPRoutes translated) of the waypoint's or the
//!   Service's namespace whose hosts match the Service, all of them, their
//!   routes in order;
//! - a match with `sourceLabels` is dropped (istio #51565); a rule left with
//!   no match never applies; the rest is kept as for a sidecar in the
//!   waypoint's namespace (`sourceMatchHTTP` with the gateway `mesh`);
//! - no route at all: the Service's endpoints, every version.
//!
//! A Service in an ambient namespace without a waypoint gets no L7 route.

use std::collections::HashMap;

use crate::{load::Manifests, model::Labels, routing::ServiceInfo};

/// The label that puts a namespace's pods in ambient mode.
pub const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
/// The label that names the waypoint of a namespace or a Service.
pub const USE_WAYPOINT: &str = "istio.io/use-waypoint";

/// Which namespaces are ambient, and the waypoint of each Service.
#[derive(Default)]
pub struct Ambient {
    namespaces: Vec<String>,
    /// By Service index: the waypoint's namespace and its pods' labels.
    waypoints: HashMap<usize, (String, Labels)>,
}

/// Whether the manifests make namespace `ns` ambient.
pub fn ambient_namespace(m: &Manifests, ns: &str) -> bool {
    m.namespaces.iter().any(|n| {
        n.metadata.name == ns
            && n.metadata.labels.get(DATAPLANE_MODE).map(String::as_str) == Some("ambient")
    })
}

/// The waypoint a Service's labels, or else its namespace's, name for it
/// (`none` opts out), whether or not such a waypoint exists.
pub fn waypoint_label<'m>(m: &'m Manifests, info: &ServiceInfo) -> Option<&'m str> {
    let service_label = m
        .services
        .iter()
        .find(|s| s.metadata.name == info.name && s.metadata.ns() == info.namespace)
        .and_then(|s| s.metadata.labels.get(USE_WAYPOINT));
    let namespace_label = m
        .namespaces
        .iter()
        .find(|n| n.metadata.name == info.namespace)
        .and_then(|n| n.metadata.labels.get(USE_WAYPOINT));
    service_label
        .or(namespace_label)
        .map(String::as_str)
        .filter(|w| *w != "none")
}

impl Ambient {
    pub fn compile(m: &Manifests, services: &[ServiceInfo]) -> Ambient {
        let namespaces: Vec<String> = m
            .namespaces
            .iter()
            .filter(|n| ambient_namespace(m, &n.metadata.name))
            .map(|n| n.metadata.name.clone())
            .collect();
        let mut waypoints = HashMap::new();
        for (i, info) in services.iter().enumerate() {
            if !namespaces.contains(&info.namespace) {
                continue;
            }
            let Some(name) = waypoint_label(m, info) else {
                continue;
            };
            // Only a waypoint that exists takes the Service's traffic.
            let exists = m.kube_gateways.iter().any(|g| {
                g.metadata.name == name
                    && g.metadata.ns() == info.namespace
                    && g.spec.gateway_class_name == crate::gateway_api::WAYPOINT_CLASS
            });
            if exists {
                let labels = Labels::from([(
                    crate::gateway_api::GATEWAY_NAME_LABEL.to_owned(),
                    name.to_owned(),
                )]);
                waypoints.insert(i, (info.namespace.clone(), labels));
            }
        }
        Ambient {
            namespaces,
            waypoints,
        }
    }

    /// Whether pods of namespace `ns` run without sidecars.
    pub fn is_ambient(&self, ns: &str) -> bool {
        self.namespaces.iter().any(|n| n == ns)
    }

    /// The waypoint of Service `svc`: its namespace and its pods' labels.
    pub fn waypoint(&self, svc: usize) -> Option<(&str, &Labels)> {
        self.waypoints.get(&svc).map(|(ns, l)| (ns.as_str(), l))
    }
}
