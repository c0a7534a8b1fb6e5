//! The `forecast` binary: its settings from flags and the environment, served
//! until SIGTERM (weather_core::server::main).

use std::process::ExitCode;

const ABOUT: &str = "Weather's forecast service: current conditions and a 1- to 7-day forecast per city; v2 adds advice from the recommendation service. Every flag can also be set by its environment variable.";

#[tokio::main]
async fn main() -> ExitCode {
    weather_core::server::main::<forecast::Config>(ABOUT).await
}
