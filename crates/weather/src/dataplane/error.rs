//! Why the data plane cannot start or apply manifests.

use std::net::SocketAddr;

/// Why the data plane cannot start or apply manifests. Each message says what to
/// do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", join(.0))]
    Load(Vec<mesh::LoadError>),
    #[error("the manifests cannot be routed:\n{}", join(.0))]
    Compile(Vec<mesh::CompileError>),
    #[error("nothing to apply: the YAML holds no object")]
    EmptyOverlay,
    #[error(
        "refused: after it the ingress would route nothing (no VirtualService with a rule bound to the ingress Gateway); nothing was changed"
    )]
    IngressLeftWithoutRoutes,
    #[error("the manifests have no Deployments: nothing to run (pass k8s/ with -f)")]
    NoDeployments,
    #[error("new workloads ({}) need a restart of weather up", .0.join(", "))]
    NewWorkloads(Vec<String>),
    #[error("Deployment {name}: {reason}")]
    Deployment { name: String, reason: String },
    #[error("cannot build an HTTP client: {0}")]
    Client(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

fn join(errors: &[impl ToString]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
