//! The local data plane of `weather up` (docs/architecture.md, "A request's path
//! through weather up"). Every Deployment's workload runs in-process on its own
//! loopback port (its "pod"); an ingress listener stands for Istio's ingress
//! gateway; each workload that calls another service gets an outbound listener
//! standing for its sidecar, so that `sourceLabels` sees the real caller.
//!
//! - [`plane`]: the one owner of what is applied (manifests, stage, routing table)
//!   and the only way to change it, [`Plane::switch`];
//! - [`proxy`]: one hop, as a `Router` of its own, tested in-process;
//! - [`boot`]: binds and starts every workload and listener;
//! - [`reload`]: re-applies the manifests when their files change.
//!
//! The admin listener is not part of the data plane: `weather up` mounts
//! [`crate::admin`] on the [`Plane`] it gets back.

mod boot;
pub mod plane;
pub mod proxy;
mod reload;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::{sync::watch, task::JoinHandle};
use weather_core::{server::RunningServer, telemetry::TelemetryArgs};

pub use boot::start;
pub use plane::{Applied, Plane, Reloads, Settings};
pub use proxy::Hop;

/// What `weather up` starts from.
#[derive(Clone, Debug)]
pub struct Options {
    pub paths: Vec<PathBuf>,
    pub stage: Option<String>,
    pub listen: SocketAddr,
    pub settings: Settings,
    /// Where the proxy hops and the workloads send their spans.
    pub telemetry: TelemetryArgs,
}

impl Options {
    /// The manifests at `paths`, served on a free loopback port, quietly: what
    /// tests and embedders start from.
    pub fn local(paths: Vec<PathBuf>, stage: Option<String>) -> Options {
        Options {
            paths,
            stage,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            settings: Settings {
                access_log: false,
                ..Settings::default()
            },
            telemetry: TelemetryArgs::default(),
        }
    }
}

/// Why the data plane cannot start or apply manifests. Each message says what to
/// do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", join(.0))]
    Load(Vec<mesh::LoadError>),
    #[error("the manifests cannot be routed:\n{}", join(.0))]
    Compile(Vec<mesh::CompileError>),
    #[error("the manifests have no Deployments: nothing to run (pass k8s/ with -f)")]
    NoDeployments,
    #[error("new workloads ({}) need a restart of weather up", .0.join(", "))]
    NewWorkloads(Vec<String>),
    #[error("Deployment {name}: {reason}")]
    Deployment { name: String, reason: String },
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

/// A running data plane: its listeners, its workloads, and the [`Plane`] that
/// routes them.
pub struct Running {
    pub ingress: SocketAddr,
    pub plane: Arc<Plane>,
    /// Deployment name and the address its workload listens on.
    pub workloads: Vec<(String, SocketAddr)>,
    servers: Vec<RunningServer>,
    watcher: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Running {
    /// Watches the applied manifests' files and applies them again when one
    /// changes; [`Plane::reloads`] tells what came of it.
    pub fn watch(&mut self, every: Duration) {
        self.watcher = Some(reload::watch(self.plane.clone(), every));
    }

    /// Stops watching, then stops every listener, letting in-flight requests end.
    pub async fn shutdown(self) {
        if let Some((stop, task)) = self.watcher {
            let _ = stop.send(true);
            let _ = task.await;
        }
        for s in self.servers.into_iter().rev() {
            let _ = s.shutdown().await;
        }
    }
}
