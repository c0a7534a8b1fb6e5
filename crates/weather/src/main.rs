use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use weather::commands;

/// Weather's release tool: the Istio routing of the shipped manifests, modelled
/// and run on one machine.
#[derive(Parser)]
#[command(name = "weather", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole release on this machine, routed by the manifests that go to
    /// the cluster: every workload, an ingress, a sidecar listener per workload.
    Up {
        /// The release stage (a folder of istio/stages/).
        #[arg(long, default_value = "multiservice")]
        stage: String,
        /// Address of the ingress (Istio's ingress gateway).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Address of the admin listener (GET /stage, POST /stage/NAME).
        #[arg(long, default_value = "127.0.0.1:15000")]
        admin: SocketAddr,
        /// Manifests to run instead of k8s/ + istio/base/ + istio/stages/STAGE.
        #[arg(short = 'f', long = "filename")]
        paths: Vec<PathBuf>,
        /// The repository root holding k8s/ and istio/.
        #[arg(long, default_value = ".")]
        root: PathBuf,
        /// Do not re-apply the manifests when their files change.
        #[arg(long)]
        no_watch: bool,
        /// Do not print an access-log line per hop.
        #[arg(long)]
        quiet: bool,
        /// How long a hop waits for an upstream's response headers before it
        /// answers 504 (UT), in milliseconds.
        #[arg(long, default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(1..))]
        upstream_timeout_ms: u64,
        /// Where the workloads and the proxy hops send their spans.
        #[command(flatten)]
        telemetry: weather_core::telemetry::TelemetryArgs,
    },
    /// Explain where one request goes, as Istio would route it.
    Route {
        /// Manifest files or folders, like kubectl apply -f.
        #[arg(short = 'f', long = "filename", required = true)]
        paths: Vec<PathBuf>,
        /// Who sends it: `ingress`, or the name of a Deployment (its sidecar).
        #[arg(long)]
        from: String,
        /// The Host (authority), e.g. forecast:3002 or weather.example.com.
        #[arg(long)]
        host: String,
        /// Path and query.
        #[arg(long, default_value = "/")]
        path: String,
        #[arg(long, default_value = "GET")]
        method: String,
        /// A request header, 'name: value' (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Analyse manifests offline; exit 1 on any error.
    Check {
        /// Manifest files or folders, like kubectl apply -f.
        #[arg(short = 'f', long = "filename", required = true)]
        paths: Vec<PathBuf>,
    },
    /// Send anonymous and tester traffic to an ingress and judge the version
    /// matrix; exit 1 on any crossing or misrouted request.
    Verify {
        /// The ingress, e.g. http://127.0.0.1:8080 (weather up) or a cluster's.
        #[arg(long)]
        url: String,
        /// Requests per kind of traffic (anonymous, tester).
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Judge by what the model predicts for this stage, not by the
        /// multiservice promise.
        #[arg(long)]
        stage: Option<String>,
        /// The stage's manifests (default: k8s/ + istio/base/ + istio/stages/STAGE).
        #[arg(short = 'f', long = "filename", requires = "stage")]
        paths: Vec<PathBuf>,
        /// The repository root holding k8s/ and istio/.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
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
        Command::Up {
            stage,
            listen,
            admin,
            paths,
            root,
            no_watch,
            quiet,
            upstream_timeout_ms,
            telemetry,
        } => {
            commands::up(commands::UpArgs {
                stage,
                paths,
                root,
                listen,
                admin,
                watch: !no_watch,
                settings: weather::dataplane::Settings {
                    access_log: !quiet,
                    upstream_timeout: std::time::Duration::from_millis(upstream_timeout_ms),
                },
                telemetry,
            })
            .await
        }
        Command::Route {
            paths,
            from,
            host,
            path,
            method,
            headers,
            output,
        } => commands::route(commands::RouteArgs {
            paths,
            from,
            host,
            path,
            method,
            headers,
            json: matches!(output, Output::Json),
        }),
        Command::Check { paths } => commands::check(&paths),
        Command::Verify {
            url,
            requests,
            concurrency,
            stage,
            paths,
            root,
        } => {
            commands::verify(commands::VerifyArgs {
                url,
                requests,
                concurrency,
                stage,
                paths,
                root,
            })
            .await
        }
        Command::Stage { name, admin } => commands::stage(&name, &admin).await,
    }
}
