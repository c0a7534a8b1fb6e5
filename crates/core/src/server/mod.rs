//! Server bootstrap (docs/architecture.md, "core"): [`listen`] accepts
//! connections and serves them with hyper within their bounds; [`layers`]
//! wraps a service's routes with what every service serves and the layers
//! every request passes ([`trace`], [`body`], [`fault`]); [`lifecycle`]
//! serves a router, in the background for tests and `weather up` or as a
//! binary's whole `main`, with a graceful drain on SIGTERM.

pub mod body;
pub mod fault;
pub mod layers;
pub mod lifecycle;
pub mod linger;
pub mod listen;
pub mod trace;

pub use layers::{not_found, service};
pub use lifecycle::{
    AppInfo, Health, RunningServer, Service, Stop, StopSignal, main, run, spawn, spawn_local,
    spawn_with,
};
