//! `weather up`: the whole release on this machine, and what it prints.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::Args;

use crate::{admin, dataplane, prometheus, stages, zipkin};

#[derive(Args, Debug)]
pub struct UpArgs {
    /// The release stage (a folder of the API's stages: istio/stages/ or
    /// istio/gateway-api/stages/).
    #[arg(long, default_value = "multiservice")]
    pub stage: String,
    /// The routing API the release is written in: `istio` (VirtualServices
    /// and DestinationRules), `gateway-api` (a Gateway and HTTPRoutes, the
    /// lane carried in the request's baggage) or `ambient` (those HTTPRoutes,
    /// no sidecars: forecast's route applied by the namespace's waypoint).
    #[arg(long, value_enum, default_value_t = stages::Api::Istio)]
    pub api: stages::Api,
    /// Address of the ingress (Istio's ingress gateway).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the admin listener (GET /stage, POST /stage/NAME).
    #[arg(long, default_value = "127.0.0.1:15000")]
    pub admin: SocketAddr,
    /// Manifests to run instead of k8s/ + istio/base/ + istio/security/ + istio/stages/STAGE
    /// (with --api gateway-api: k8s/ + istio/gateway-api/base/ + istio/security/ + istio/gateway-api/stages/STAGE; with --api ambient: k8s/ + istio/gateway-api/base/ + istio/ambient/ + istio/gateway-api/stages/STAGE).
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
    /// Start a trace viewer (Zipkin's server with its UI, on Java) and send
    /// every workload's and proxy hop's spans to it; the admin page links each
    /// request to its trace.
    #[arg(long)]
    pub traces: bool,
    /// Where that viewer listens.
    #[arg(long, default_value = "127.0.0.1:9411")]
    pub traces_listen: SocketAddr,
    /// Zipkin's server jar (default: where scripts/setup's Maven puts it).
    #[arg(long, env = "WEATHER_ZIPKIN_JAR")]
    pub zipkin_jar: Option<PathBuf>,
    /// The Java program that runs it.
    #[arg(long, env = "WEATHER_JAVA", default_value = "java")]
    pub java: PathBuf,
    /// Where the workloads and the proxy hops send their spans.
    #[command(flatten)]
    pub telemetry: weather_core::telemetry::TelemetryArgs,
}

pub async fn up(a: UpArgs) -> ExitCode {
    let stop = weather_core::server::StopSignal::install();
    let (paths, stage) = if a.paths.is_empty() {
        match stages::paths_for(&a.root, a.api, &a.stage) {
            Ok(p) => (p, Some(a.stage.clone())),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        (a.paths.clone(), None)
    };
    if let Err(e) = a.telemetry.exporter() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    // The viewer first: every workload and hop is pointed at it as it starts.
    let viewer = if a.traces {
        let opts = zipkin::Options {
            java: a.java.clone(),
            jar: a.zipkin_jar.clone(),
            listen: a.traces_listen,
        };
        println!(
            "starting Zipkin on {} (some seconds: a JVM)",
            a.traces_listen
        );
        match zipkin::Zipkin::start(&opts).await {
            Ok(z) => Some(z),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let mut opts = dataplane::Options {
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
    if let Some(z) = &viewer {
        opts = opts.traced(z.collector(), z.url.clone());
    }
    let mut running = match dataplane::start(opts).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(z) = viewer {
                z.stop().await;
            }
            return ExitCode::FAILURE;
        }
    };
    let admin = match admin::serve(a.admin, running.plane.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen on {} (admin): {e}", a.admin);
            running.shutdown().await;
            if let Some(z) = viewer {
                z.stop().await;
            }
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
                if let Some(z) = viewer {
                    z.stop().await;
                }
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
        viewer.as_ref().map(|z| z.url.as_str()),
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
    if let Some(z) = viewer {
        z.stop().await;
    }
    ExitCode::SUCCESS
}

/// What `weather up` prints once everything listens: where to go next.
fn print_banner(
    root: &std::path::Path,
    stage: Option<&str>,
    running: &dataplane::Running,
    admin: SocketAddr,
    prometheus: Option<&str>,
    traces: Option<&str>,
) {
    let url = format!("http://{}/", running.ingress);
    let api = stages::Api::of(&running.plane.applied().paths);
    println!();
    match stage {
        Some(s) => println!(
            "  Weather is up, {} stage {s}: {}",
            api.title(),
            stages::summary_for(root, api, s)
        ),
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
    if let Some(t) = traces {
        println!(
            "  Traces    {t}/zipkin/   (Zipkin: every hop's span; the admin page links each request to its trace)"
        );
    }
    println!();
    if stage.is_some() {
        println!("  Stages:");
        for s in stages::names_for(root, api) {
            println!("    {s:<20} {}", stages::summary_for(root, api, &s));
        }
        println!();
    }
    // In ambient mode no sidecar routes a pod's calls: the hop it calls
    // through stands for ztunnel and the Service's waypoint.
    let through = match api {
        stages::Api::Ambient => "ztunnel and the waypoint (what it calls through)",
        _ => "its sidecar (what it calls through)",
    };
    println!("  Workloads        pod               {through}");
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
