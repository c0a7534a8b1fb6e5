use std::process::ExitCode;

use clap::Parser;
use weather_core::{AppInfo, ServeArgs, server};

/// Weather's forecast service: current conditions and a 1- to 7-day forecast per
/// city; v2 adds advice from the recommendation service. Every flag can also be set
/// by its environment variable.
#[derive(Parser)]
#[command(name = "forecast", version)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    config: forecast::Config,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let info = AppInfo {
        app: forecast::APP,
        version: cli.config.app.app_version,
    };
    server::run(info, forecast::DEFAULT_PORT, cli.serve, |health| {
        forecast::app(&cli.config, health)
    })
    .await
}
