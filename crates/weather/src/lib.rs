//! The `weather` command: the Istio model of the `mesh` crate applied to the
//! Weather services. `up` runs the whole release on one machine, `route`
//! explains one routing decision, `check` analyses manifests, `verify` measures
//! the version matrix against any ingress.

pub mod admin;
pub mod commands;
pub mod companion;
pub mod dataplane;
pub mod predict;
pub mod prometheus;
pub mod release;
pub mod stages;
pub mod verify;
pub mod workloads;
pub mod zipkin;
