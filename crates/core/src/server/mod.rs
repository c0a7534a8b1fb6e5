//! Server bootstrap (docs/architecture.md, "core"): [`layers`] wraps a
//! service's routes with what every service serves and every request passes;
//! [`lifecycle`] serves a router, in the background for tests and `weather up`
//! or as a binary's whole `main`, with a graceful drain on SIGTERM.

mod http1;
pub mod layers;
pub mod lifecycle;
pub mod listen;

pub use layers::{not_found, service};
pub use lifecycle::{
    AppInfo, Health, RunningServer, Service, Stop, StopSignal, main, run, spawn, spawn_local,
    spawn_with,
};
