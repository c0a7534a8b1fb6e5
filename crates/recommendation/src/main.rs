use std::process::ExitCode;

use clap::Parser;
use weather_core::{AppInfo, ServeArgs, server};

/// Weather's recommendation service: advice (clothing, umbrella, activity, sun,
/// air) for a day's forecast. Every flag can also be set by its environment variable.
#[derive(Parser)]
#[command(name = "recommendation", version)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    config: recommendation::Config,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let info = AppInfo {
        app: recommendation::APP,
        version: cli.config.app.app_version,
    };
    server::run(info, recommendation::DEFAULT_PORT, cli.serve, |health| {
        recommendation::app(&cli.config, health)
    })
    .await
}
