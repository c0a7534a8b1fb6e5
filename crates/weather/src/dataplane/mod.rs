//! The local data plane of `weather up` (docs/architecture.md, "A request's path
//! through weather up"). Every Deployment's workload runs in-process on its own
//! loopback port (its "pod"); an ingress listener stands for Istio's ingress
//! gateway; each workload that calls another service gets an outbound listener
//! standing for its sidecar, so that `sourceLabels` sees the real caller.
//!
//! - [`plane`]: the one owner of what is applied (manifests, stage, routing table)
//!   and the only way to change it, [`Plane::switch`];
//! - [`proxy`]: one hop, as a `Router` of its own, tested in-process; its
//!   connections to the workloads in `upstream`;
//! - [`boot`]: binds and starts every workload and listener; `pods` keeps
//!   the workloads and rolls one whose Deployment's environment changes;
//! - `circuit`: the circuit breakers and outlier detection each hop keeps
//!   per cluster;
//! - [`reload`]: re-applies the manifests when their files change;
//! - [`stats`]: Istio's standard metrics of every hop, and the window of recent
//!   traffic the admin page draws.
//!
//! The admin listener is not part of the data plane: `weather up` mounts
//! [`crate::admin`] on the [`Plane`] it gets back.

mod boot;
mod circuit;
mod downstream;
mod error;
mod headers;
mod jwks;
mod metered;
pub mod plane;
mod pods;
pub mod proxy;
mod refusal;
mod reload;
pub mod stats;
mod upstream;

pub use boot::{Options, Running, start};
pub use error::Error;
pub use plane::{Applied, Overlay, Plane, Reloads, Settings};
pub use proxy::Hop;
pub use stats::Stats;
