//! `weather verify`: the version matrix of an ingress, judged.

use std::{path::PathBuf, process::ExitCode};

use clap::Args;

use mesh::Mesh;

use crate::{stages, verify};

use super::load;

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The ingress, e.g. http://127.0.0.1:8080 (weather up) or a cluster's.
    #[arg(long)]
    pub url: String,
    /// Requests per kind of traffic (anonymous, tester).
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Judge by what the model predicts for this stage, not by the
    /// multiservice promise.
    #[arg(long)]
    pub stage: Option<String>,
    /// The API the stage is written in (`gateway-api`: a folder of
    /// istio/gateway-api/stages/).
    #[arg(long, value_enum, default_value_t = stages::Api::Istio, requires = "stage")]
    pub api: stages::Api,
    /// The stage's manifests (default: k8s/ + istio/base/ + istio/stages/STAGE).
    #[arg(short = 'f', long = "filename", requires = "stage")]
    pub paths: Vec<PathBuf>,
    /// The repository root holding k8s/ and istio/.
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
}

pub async fn verify(a: VerifyArgs) -> ExitCode {
    let (judge, judged_by) = match &a.stage {
        None => (
            verify::Judge::Promise,
            "the multiservice promise (testers on v2, everyone else on v1)".to_owned(),
        ),
        Some(stage) => {
            let paths = if a.paths.is_empty() {
                match stages::paths_for(&a.root, a.api, stage) {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                a.paths.clone()
            };
            let manifests = match load(&paths) {
                Ok(m) => m,
                Err(code) => return code,
            };
            let mesh = Mesh::compile(&manifests);
            (
                verify::Judge::Stage {
                    name: stage.clone(),
                    manifests: Box::new(manifests),
                    mesh: Box::new(mesh),
                },
                format!("the model's prediction for stage {stage}"),
            )
        }
    };
    if a.requests == 0 {
        eprintln!("error: --requests must be at least 1");
        return ExitCode::from(2);
    }
    println!(
        "weather verify: {} anonymous and {} tester requests to {}",
        a.requests, a.requests, a.url
    );
    match verify::run(verify::Options {
        url: a.url,
        requests: a.requests,
        concurrency: a.concurrency,
        judge,
    })
    .await
    {
        Ok(report) => {
            print!("{}", report.render(&judged_by));
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
