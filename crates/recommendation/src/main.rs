//! The `recommendation` binary: its settings from flags and the environment, served
//! until SIGTERM (weather_core::server::main).

use std::process::ExitCode;

const ABOUT: &str = "Weather's recommendation service: advice (clothing, umbrella, activity, sun, air) for a day's forecast. Every flag can also be set by its environment variable.";

#[tokio::main]
async fn main() -> ExitCode {
    weather_core::server::main::<recommendation::Config>(ABOUT).await
}
