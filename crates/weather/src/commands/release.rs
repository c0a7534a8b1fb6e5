//! `weather release`: a release train against `weather up` or a cluster.

use std::{path::PathBuf, process::ExitCode};

use clap::Args;

use mesh::terms::trim_ows;

use crate::stages;

use super::{Output, stage::admin_paths};

#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// The ReleaseTrain spec, e.g. release/frontend-forecast-v2.yaml.
    pub spec: PathBuf,
    /// The admin listener of a running weather up (ignored with --kube-context).
    #[arg(long, default_value = "http://127.0.0.1:15000")]
    pub admin: String,
    /// Apply to a cluster with kubectl instead, in this context.
    #[arg(long)]
    pub kube_context: Option<String>,
    /// The namespace of the train's services (default: the spec's
    /// metadata.namespace).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// A Prometheus with Istio's metrics (required on a cluster and for custom
    /// queries; without it, weather up's own /stats/prometheus is read).
    #[arg(long)]
    pub prometheus: Option<String>,
    /// The ingress, for --load and the checks after promotion or rollback.
    #[arg(long)]
    pub url: Option<String>,
    /// Send traffic to the ingress while the train runs, as Flagger's load
    /// tester does: half of it with the --lane-header headers.
    #[arg(long)]
    pub load: bool,
    /// A header of the load on the A/B phase's lane (`name: value`).
    #[arg(long = "lane-header", default_value = "cookie: user=tester")]
    pub lane_headers: Vec<String>,
    /// The manifests the train is applied over (default: those weather up
    /// runs, from its admin listener; on a cluster: k8s/ + istio/base/ +
    /// istio/stages/all-v1).
    #[arg(short = 'f', long = "filename")]
    pub paths: Vec<PathBuf>,
    /// Print the plan (every step's weights and YAML) and apply nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Override the spec's analysis interval (e.g. 3s for a local demo).
    #[arg(long)]
    pub interval: Option<String>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// `weather release`: exit 0 promoted, 3 rolled back, 1 on error (2 on bad
/// usage), 130 when interrupted.
pub async fn release(a: ReleaseArgs) -> ExitCode {
    let stop = weather_core::server::StopSignal::install();
    use crate::release::run::{self, Outcome, Target};
    let mut lane = Vec::new();
    for h in &a.lane_headers {
        match h.split_once(':') {
            Some((k, v)) if !trim_ows(k).is_empty() => {
                lane.push((trim_ows(k).to_owned(), trim_ows(v).to_owned()))
            }
            _ => {
                eprintln!("error: --lane-header {h:?}: expected `name: value`");
                return ExitCode::from(2);
            }
        }
    }
    let target = match &a.kube_context {
        Some(c) => Target::Kubectl {
            context: Some(c.clone()),
        },
        None => Target::Admin(a.admin.trim_end_matches('/').to_owned()),
    };
    let manifests = if !a.paths.is_empty() {
        a.paths.clone()
    } else if let Target::Admin(admin) = &target {
        match admin_paths(admin).await {
            Ok(p) => p,
            Err(e) if a.dry_run => {
                tracing::debug!("{e}");
                stages::paths(std::path::Path::new("."), "all-v1").unwrap_or_default()
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        stages::paths(std::path::Path::new("."), "all-v1").unwrap_or_default()
    };
    let opts = run::Options {
        spec: a.spec.clone(),
        target,
        manifests,
        prometheus: a.prometheus.clone(),
        url: a.url.clone(),
        load: a.load,
        lane_headers: lane,
        progress: matches!(a.output, Output::Text),
        interval: a.interval.clone(),
        namespace: a.namespace.clone(),
    };
    let (train, m) = match run::prepare(&opts) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if a.dry_run {
        print!("{}", run::plan(&train, &m));
        return ExitCode::SUCCESS;
    }
    let interrupt = async {
        stop.wait().await;
    };
    match run::run(&opts, &train, &m, interrupt).await {
        Ok(report) => {
            match a.output {
                Output::Text => print!("{}", report.render()),
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                ),
            }
            match report.outcome {
                Outcome::Promoted => ExitCode::SUCCESS,
                Outcome::RolledBack => ExitCode::from(3),
                Outcome::Interrupted => ExitCode::from(130),
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
