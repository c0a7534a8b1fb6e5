//! The `frontend` binary: its settings from flags and the environment, served
//! until SIGTERM (weather_core::server::main).

use std::process::ExitCode;

const ABOUT: &str = "Weather's frontend: the weather pages (v1 grey buttons, v2 blue), login and logout, and the same data as JSON on /api/weather. Every flag can also be set by its environment variable.";

#[tokio::main]
async fn main() -> ExitCode {
    weather_core::server::main::<frontend::Config>(ABOUT).await
}
