//! The subcommands' bodies, each returning its exit code.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, ValueEnum};

use mesh::{
    Manifests, Mesh,
    analyze::{Level, analyze},
    authn::JwkSet,
    explain::explain,
    load_paths,
    routing::{Caller, Request},
    security::{Arrival, Dest},
    terms::WithClaims,
};

use crate::{admin, dataplane, prometheus, stages, verify};

fn load(paths: &[PathBuf]) -> Result<Manifests, ExitCode> {
    if paths.is_empty() {
        eprintln!("error: no manifests: pass -f PATH (files or folders, like kubectl apply -f)");
        return Err(ExitCode::from(2));
    }
    load_paths(paths).map_err(|errors| {
        for e in errors {
            eprintln!("error: {e}");
        }
        ExitCode::FAILURE
    })
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct RouteArgs {
    /// Manifest files or folders, like kubectl apply -f.
    #[arg(short = 'f', long = "filename", required = true)]
    pub paths: Vec<PathBuf>,
    /// Who sends it: `ingress`, or the name of a Deployment (its sidecar).
    #[arg(long)]
    pub from: String,
    /// The Host (authority), e.g. forecast:3002 or weather.example.com.
    #[arg(long)]
    pub host: String,
    /// Path and query.
    #[arg(long, default_value = "/")]
    pub path: String,
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// A request header, 'name: value' (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// The keys (a JWKS file) that RequestAuthentications naming a jwksUri
    /// verify tokens with; the frontend serves them on /.well-known/jwks.json.
    #[arg(long, value_name = "FILE")]
    pub jwks: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
}

pub fn route(a: RouteArgs) -> ExitCode {
    let m = match load(&a.paths) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let mut headers = Vec::new();
    for h in &a.headers {
        match h.split_once(':') {
            Some((k, v)) if !k.trim().is_empty() => {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            }
            _ => {
                eprintln!("error: -H {h:?}: expected 'name: value'");
                return ExitCode::from(2);
            }
        }
    }
    let mesh = Mesh::compile(&m);
    let caller = if a.from == "ingress" {
        Caller::Ingress
    } else {
        match mesh.workloads.iter().find(|w| w.name == a.from) {
            Some(w) => Caller::Workload {
                namespace: &w.namespace,
                labels: &w.labels,
            },
            None => {
                let names: Vec<&str> = mesh.workloads.iter().map(|w| w.name.as_str()).collect();
                eprintln!(
                    "error: --from {:?}: no such Deployment; use `ingress` or one of: {}",
                    a.from,
                    names.join(", ")
                );
                return ExitCode::from(2);
            }
        }
    };
    let keys = match &a.jwks {
        None => None,
        Some(file) => match std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<JwkSet>(&t).map_err(|e| e.to_string()))
        {
            Ok(k) => Some(std::sync::Arc::new(k)),
            Err(e) => {
                eprintln!("error: --jwks {}: {e}", file.display());
                return ExitCode::from(2);
            }
        },
    };
    let keys = |_: &str| keys.clone();
    let (path, query) = a.path.split_once('?').unwrap_or((&a.path, ""));
    let normalized = mesh::path::normalize(path).unwrap_or(std::borrow::Cow::Borrowed(path));
    let arrival = |caller: Option<&'static str>| Arrival {
        caller,
        host: &a.host,
        method: &a.method,
        path: &normalized,
        query,
        headers: headers.as_slice(),
    };
    // At the ingress, its own filters come first, and a verified token's
    // claims are what `@request.auth.claims` routes read.
    let mut security = Vec::new();
    let mut claims = None;
    let mut refused = None;
    if matches!(caller, Caller::Ingress) && !mesh.security.is_open() {
        let admission = mesh.security.admit(Dest::Ingress, &arrival(None), &keys);
        security.extend(admission.describe("ingress gateway"));
        refused = admission.refusal();
        claims = admission.claims().cloned();
    }
    let with_claims = WithClaims {
        headers: headers.as_slice(),
        claims: claims.as_ref(),
    };
    let req = Request {
        authority: &a.host,
        path: &a.path,
        method: &a.method,
        scheme: "http",
        headers: &with_claims,
    };
    let e = explain(&mesh, caller, &req);
    // Then each destination's sidecar, with the caller's identity.
    let identity = match caller {
        Caller::Ingress => Some(mesh::security::ingress_principal()),
        Caller::Workload { .. } => mesh
            .workloads
            .iter()
            .find(|w| w.name == a.from)
            .map(mesh::security::workload_principal),
    };
    if refused.is_none() && !mesh.security.is_open() {
        if matches!(mesh.route(caller, &req), mesh::Routed::Blocked) {
            security.push("were its Sidecar to let it through:".to_owned());
        }
        let callee = identity.as_deref();
        for i in destination_workloads(&mesh, caller, &req) {
            let w = &mesh.workloads[i];
            let arrival = Arrival {
                caller: callee,
                ..arrival(None)
            };
            let admission = mesh.security.admit(Dest::Workload(i), &arrival, &keys);
            security.extend(admission.describe(&w.name));
        }
    }
    if matches!(a.output, Output::Json) {
        let mut v = serde_json::to_value(&e).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            if !security.is_empty() {
                o.insert("security".into(), serde_json::json!(security));
            }
            if let Some(r) = refused {
                o.insert("status".into(), serde_json::json!(r.status));
            }
        }
        println!("{v}");
    } else {
        match refused {
            Some(r) => {
                for l in &security {
                    println!("{l}");
                }
                println!("refused at the ingress: {} {}", r.status, r.body);
            }
            None => {
                print!("{}", e.text());
                for l in &security {
                    println!("{l}");
                }
            }
        }
    }
    ExitCode::SUCCESS
}

/// The workloads a request may land on, for the security lines.
fn destination_workloads<H: mesh::terms::HeaderLookup + ?Sized>(
    mesh: &Mesh,
    caller: Caller<'_>,
    req: &Request<'_, H>,
) -> Vec<usize> {
    let mut out = Vec::new();
    match mesh.route(caller, req) {
        mesh::Routed::Route { targets, .. } => {
            for t in targets.iter().filter(|t| t.weight > 0) {
                for &i in &t.endpoints {
                    if !out.contains(&i) {
                        out.push(i);
                    }
                }
            }
        }
        // Refused by the caller's own Sidecar: what the Service's pods would
        // say, were it let through (the second line of defence).
        mesh::Routed::Blocked => {
            if let Caller::Workload { namespace, .. } = caller {
                let (host, _) = mesh::hosts::split_authority(req.authority);
                let fqdn = mesh::hosts::expand_authority(&host, namespace);
                if let Some(s) = mesh.service(&fqdn) {
                    out.extend_from_slice(mesh.endpoints(s));
                }
            }
        }
        _ => {}
    }
    out
}

/// `weather keygen`: a new P-256 private key (PKCS#8 PEM) on standard output,
/// for the Secret frontend-jwt-key.
pub fn keygen() -> ExitCode {
    match frontend::token::generate_pem() {
        Ok(pem) => {
            print!("{pem}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: could not make a key: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn check(paths: &[PathBuf]) -> ExitCode {
    let m = match load(paths) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let messages = analyze(&m, &Mesh::compile(&m));
    for msg in &messages {
        println!("{msg}");
    }
    for n in &m.notes {
        println!("Info: {n}");
    }
    let errors = messages.iter().filter(|m| m.level == Level::Error).count();
    let warnings = messages.len() - errors;
    let what: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if errors == 0 {
        println!(
            "✔ No errors found when analyzing {} ({warnings} warnings)",
            what.join(", ")
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "✘ {errors} errors, {warnings} warnings in {}",
            what.join(", ")
        );
        ExitCode::FAILURE
    }
}

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
                match stages::paths(&a.root, stage) {
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

#[derive(Args, Debug)]
pub struct UpArgs {
    /// The release stage (a folder of istio/stages/).
    #[arg(long, default_value = "multiservice")]
    pub stage: String,
    /// Address of the ingress (Istio's ingress gateway).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the admin listener (GET /stage, POST /stage/NAME).
    #[arg(long, default_value = "127.0.0.1:15000")]
    pub admin: SocketAddr,
    /// Manifests to run instead of k8s/ + istio/base/ + istio/security/ + istio/stages/STAGE.
    #[arg(short = 'f', long = "filename")]
    pub paths: Vec<PathBuf>,
    /// The repository root holding k8s/ and istio/.
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    /// Do not re-apply the manifests when their files change.
    #[arg(long)]
    pub no_watch: bool,
    /// Do not print an access-log line per hop.
    #[arg(long)]
    pub quiet: bool,
    /// A timeout for the routes whose VirtualService sets no `timeout`, in
    /// milliseconds (504 UT past it). Unset: none, as in Istio.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub upstream_timeout_ms: Option<u64>,
    /// Do not record Istio's standard metrics (for measuring what they cost).
    #[arg(long)]
    pub no_metrics: bool,
    /// Start a Prometheus (Debian's `prometheus`) scraping the admin listener's
    /// /stats/prometheus, so the queries Kiali and Flagger run answer locally.
    #[arg(long)]
    pub prometheus: bool,
    /// Where that Prometheus listens.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub prometheus_listen: SocketAddr,
    /// How often it scrapes, in milliseconds.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub scrape_interval_ms: u64,
    /// The Prometheus program.
    #[arg(long, env = "WEATHER_PROMETHEUS", default_value = "prometheus")]
    pub prometheus_bin: PathBuf,
    /// Where the workloads and the proxy hops send their spans.
    #[command(flatten)]
    pub telemetry: weather_core::telemetry::TelemetryArgs,
}

pub async fn up(a: UpArgs) -> ExitCode {
    let stop = weather_core::server::StopSignal::install();
    let (paths, stage) = if a.paths.is_empty() {
        match stages::paths(&a.root, &a.stage) {
            Ok(p) => (p, Some(a.stage.clone())),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        (a.paths.clone(), None)
    };
    let opts = dataplane::Options {
        paths,
        stage: stage.clone(),
        listen: a.listen,
        settings: dataplane::Settings {
            access_log: !a.quiet,
            default_timeout: a.upstream_timeout_ms.map(Duration::from_millis),
            metrics: !a.no_metrics,
            ..dataplane::Settings::default()
        },
        telemetry: a.telemetry.clone(),
    };
    let mut running = match dataplane::start(opts).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let admin = match admin::serve(a.admin, running.plane.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen on {} (admin): {e}", a.admin);
            running.shutdown().await;
            return ExitCode::FAILURE;
        }
    };
    let prometheus = if a.prometheus {
        let opts = prometheus::Options {
            program: a.prometheus_bin.clone(),
            listen: a.prometheus_listen,
            target: admin.addr,
            scrape_interval: Duration::from_millis(a.scrape_interval_ms),
        };
        match prometheus::Prometheus::start(&opts).await {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("error: {e}");
                let _ = admin.shutdown().await;
                running.shutdown().await;
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    if !a.no_watch {
        running.watch(Duration::from_secs(1));
    }
    let prometheus_url = prometheus.as_ref().map(|p| p.url.as_str());
    print_banner(
        &a.root,
        stage.as_deref(),
        &running,
        admin.addr,
        prometheus_url,
    );
    stop.wait().await;
    println!("stopping");
    if let Some(p) = prometheus {
        p.stop().await;
    }
    let _ = admin.shutdown().await;
    running.shutdown().await;
    // Send the spans still buffered, the workloads' and the proxies'.
    let _ = tokio::task::spawn_blocking(weather_core::telemetry::shutdown_all).await;
    ExitCode::SUCCESS
}

/// What `weather up` prints once everything listens: where to go next.
fn print_banner(
    root: &std::path::Path,
    stage: Option<&str>,
    running: &dataplane::Running,
    admin: SocketAddr,
    prometheus: Option<&str>,
) {
    let url = format!("http://{}/", running.ingress);
    println!();
    match stage {
        Some(s) => println!("  Weather is up, stage {s}: {}", stages::summary(root, s)),
        None => println!("  Weather is up, routed by the manifests given with -f"),
    }
    println!();
    println!("  Open      {url}");
    println!(
        "            log in as \"tester\" for the v2 chain (blue buttons, advice); log out for v1"
    );
    println!("  Verify    weather verify --url {url}");
    println!(
        "  Stage     weather stage NAME --admin http://{admin}   (or edit the manifests: they are watched)"
    );
    println!("  Watch     http://{admin}/   (graph, stage buttons, version matrix)");
    println!("  Metrics   http://{admin}/stats/prometheus   (Istio's standard metrics)");
    println!();
    if stage.is_some() {
        println!("  Stages:");
        for s in stages::names(root) {
            println!("    {s:<20} {}", stages::summary(root, &s));
        }
        println!();
    }
    println!("  Workloads        pod               its sidecar (what it calls through)");
    for (name, addr) in &running.workloads {
        let sidecar = running
            .sidecars
            .iter()
            .find(|(n, _)| n == name)
            .map_or_else(String::new, |(_, a)| a.to_string());
        println!("    {name:<14} {:<17} {sidecar}", addr.to_string());
    }
    let secured = !running.plane.applied().mesh.security.is_open();
    let sidecar_of = |prefix: &str| {
        running
            .sidecars
            .iter()
            .find(|(n, _)| n.starts_with(prefix))
            .map(|(_, a)| *a)
    };
    if secured {
        if let Some(addr) = sidecar_of("frontend") {
            println!(
                "  Least privilege: curl -i -X POST 'http://{addr}/forecast?city=paris'   (the frontend may only GET forecast: 403 RBAC: access denied)"
            );
        }
        if let Some(addr) = sidecar_of("recommendation") {
            println!(
                "                   curl -i -H 'Host: forecast:3002' 'http://{addr}/forecast'   (recommendation calls nobody: its Sidecar answers 502)"
            );
        }
    }
    println!();
    if let Some(url) = prometheus {
        print_prometheus(url);
    }
    println!("  Press Ctrl-C to stop.");
    println!();
}

/// The queries Flagger and Kiali run on a cluster, ready to paste.
fn print_prometheus(url: &str) {
    println!("  Prometheus {url}   (scrapes the admin listener; stopped with weather up)");
    for (what, query) in [
        ("success rate by version", prometheus::SUCCESS_RATE),
        ("p99 latency by version", prometheus::P99),
    ] {
        println!("    {what}:");
        println!("      {query}");
    }
    println!();
}

pub async fn stage(name: &str, admin: &str) -> ExitCode {
    let url = format!("{}/stage/{name}", admin.trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .pool_idle_timeout(weather_core::server::listen::POOL_IDLE)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build();
    let res = match http {
        Ok(h) => h.post(&url).send().await,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match res {
        Ok(r) => {
            let ok = r.status().is_success();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            if ok {
                println!("{}", body["applied"].as_str().unwrap_or("applied"));
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "error: {}",
                    body["error"]
                        .as_str()
                        .unwrap_or("the stage was not applied")
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!(
                "error: cannot reach weather up's admin listener at {admin}: {e} (is weather up running?)"
            );
            ExitCode::FAILURE
        }
    }
}

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
            Some((k, v)) if !k.trim().is_empty() => {
                lane.push((k.trim().to_owned(), v.trim().to_owned()))
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

/// The manifests a running weather up was started from (`GET /stage`).
async fn admin_paths(admin: &str) -> Result<Vec<PathBuf>, String> {
    let url = format!("{admin}/stage");
    let http = reqwest::Client::builder()
        .pool_idle_timeout(weather_core::server::listen::POOL_IDLE)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("cannot reach weather up's admin listener at {admin}: {e} (is weather up running? or pass -f for --dry-run)"))?
        .json()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let paths: Vec<PathBuf> = v["paths"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(PathBuf::from))
                .collect()
        })
        .unwrap_or_default();
    if paths.is_empty() {
        return Err(format!("{url} names no manifests"));
    }
    Ok(paths)
}
