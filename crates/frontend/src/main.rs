//! The `frontend` binary: its settings from flags and the environment, served
//! until SIGTERM (weather_core::server::main).

use std::process::ExitCode;

/// mimalloc (v3) instead of glibc's malloc: a request makes many small
/// allocations, and they cost about an eighth fewer instructions so, at the
/// same memory (README, "Benchmarks").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ABOUT: &str = "Weather's frontend: the weather pages (v1 grey buttons, v2 blue), login and logout, and the same data as JSON on /api/weather. Every flag can also be set by its environment variable.";

#[tokio::main]
async fn main() -> ExitCode {
    weather_core::server::main::<frontend::Config>(ABOUT).await
}
