use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weather::commands::{self, ReleaseArgs, RouteArgs, UpArgs, VerifyArgs};

/// Weather's release tool: the Istio routing of the shipped manifests, modelled
/// and run on one machine.
#[derive(Parser)]
#[command(name = "weather", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole release on this machine, routed by the manifests that go to
    /// the cluster: every workload, an ingress, a sidecar listener per workload.
    Up(UpArgs),
    /// Explain where one request goes, as Istio would route it.
    Route(RouteArgs),
    /// Analyse manifests offline; exit 1 on any error.
    Check {
        /// Manifest files or folders, like kubectl apply -f.
        #[arg(short = 'f', long = "filename", required = true)]
        paths: Vec<std::path::PathBuf>,
    },
    /// Send anonymous and tester traffic to an ingress and judge the version
    /// matrix; exit 1 on any crossing or misrouted request.
    Verify(VerifyArgs),
    /// Release services together as one train: one lane, one set of gates,
    /// one rollback. Exit 0 promoted, 3 rolled back, 1 on error.
    Release(ReleaseArgs),
    /// Print a new signing key (P-256, PKCS#8 PEM) for the frontend's tokens:
    /// kubectl -n weather create secret generic frontend-jwt-key
    /// --from-file=key.pem=<(weather keygen)
    Keygen,
    /// Switch the stage of a running `weather up`.
    Stage {
        name: String,
        #[arg(long, default_value = "http://127.0.0.1:15000")]
        admin: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    weather_core::telemetry::init();
    match Cli::parse().command {
        Command::Up(a) => commands::up(a).await,
        Command::Route(a) => commands::route(a),
        Command::Check { paths } => commands::check(&paths),
        Command::Verify(a) => commands::verify(a).await,
        Command::Release(a) => commands::release(a).await,
        Command::Keygen => commands::keygen(),
        Command::Stage { name, admin } => commands::stage(&name, &admin).await,
    }
}
