//! A route's destination as the table holds it: the Service and subset it
//! names, resolved to pods, with its cluster's policy, or why it cannot take
//! traffic. Its own module so that the policy of a route (whose mirrors are
//! destinations) and the routing outcome (which carries that policy) can both
//! name it.

/// Why a destination cannot take traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The host is not a Service: Envoy has no cluster (503 `NC`).
    UnknownHost,
    /// No DestinationRule defines the subset: no cluster (503 `NC`).
    UnknownSubset,
    /// The subset selects no pods (503 `UH`).
    NoEndpoints,
    /// An HTTPRoute's backend is not a Service: no cluster, and istiod has
    /// Envoy answer 500 (`cluster_not_found_response_code`), flag `NC`.
    UnknownBackend,
}

impl Problem {
    pub fn flag(&self) -> &'static str {
        match self {
            Problem::UnknownHost | Problem::UnknownSubset | Problem::UnknownBackend => "NC",
            Problem::NoEndpoints => "UH",
        }
    }

    /// The status the proxy answers with.
    pub fn status(&self) -> u16 {
        match self {
            Problem::UnknownBackend => 500,
            _ => 503,
        }
    }
}

/// A destination of a route, resolved when the table is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The host as the route names it.
    pub host: String,
    pub service: Option<usize>,
    pub subset: Option<String>,
    /// The weight as configured (100 for a lone destination).
    pub weight: u32,
    /// Indices into [`crate::Mesh::workloads`].
    pub endpoints: Vec<usize>,
    pub problem: Option<Problem>,
    /// The cluster's circuit breakers and outlier detection, from its
    /// DestinationRule ([`crate::cluster`]).
    pub cluster: crate::cluster::ClusterPolicy,
    /// The destination's own `headers`, applied after its route's.
    pub headers: crate::headers::Headers,
}
