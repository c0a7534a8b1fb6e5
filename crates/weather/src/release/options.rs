//! What a run of `weather release` is given, and how it fails.

use std::path::PathBuf;

use super::spec;

/// Where the routing is applied and the metrics read.
#[derive(Clone, Debug)]
pub enum Target {
    /// A `weather up`'s admin listener (`POST /apply`, `GET /stats/prometheus`).
    Admin(String),
    /// A cluster: `kubectl apply` (with this context, when given), and the
    /// metrics from a Prometheus.
    Kubectl { context: Option<String> },
}

#[derive(Clone, Debug)]
pub struct Options {
    pub spec: PathBuf,
    pub target: Target,
    /// The manifests the train is applied over (to name and check what it
    /// replaces).
    pub manifests: Vec<PathBuf>,
    /// A Prometheus with Istio's metrics; required on a cluster and for
    /// custom queries.
    pub prometheus: Option<String>,
    /// The ingress, for `--load` and the checks after promotion or rollback.
    pub url: Option<String>,
    pub load: bool,
    /// Headers of the load's requests on the A/B phase's lane.
    pub lane_headers: Vec<(String, String)>,
    /// Prints each step's progress (text mode).
    pub progress: bool,
    /// Replaces the spec's analysis interval (a Go duration).
    pub interval: Option<String>,
    /// Replaces the spec's namespace.
    pub namespace: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Spec(#[from] spec::Error),
    #[error("the manifests: {0}")]
    Manifests(String),
    #[error("{0}")]
    Apply(String),
    #[error("{0}")]
    Metrics(String),
    #[error("{0}")]
    Usage(String),
}
