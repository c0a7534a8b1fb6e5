use std::process::ExitCode;

use clap::Parser;
use weather_core::{AppInfo, ServeArgs, server};

/// Weather's frontend: the weather pages (v1 grey buttons, v2 blue), login and
/// logout, and the same data as JSON on /api/weather. Every flag can also be set by
/// its environment variable.
#[derive(Parser)]
#[command(name = "frontend", version)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    config: frontend::Config,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let info = AppInfo {
        app: frontend::APP,
        version: cli.config.app.app_version,
    };
    server::run(info, frontend::DEFAULT_PORT, cli.serve, |health| {
        frontend::app(&cli.config, health)
    })
    .await
}
