//! The resilience settings against Istio itself, two ways:
//!
//! - field by field: for every shipped stage, each route istiod pushes to each
//!   proxy (its timeout, retry policy, fault and mirrors) and each outbound
//!   cluster (its circuit breakers, outlier detection, panic threshold and
//!   requests per connection) against what the model applies to the same
//!   rule and cluster;
//! - in effect, where Envoy is deterministic: a real Envoy with istiod's routes
//!   and clusters, and `weather up`'s ingress hop, given the same requests: a
//!   timeout (504 `UT`), retries on 5xx against an upstream that always
//!   fails (every attempt counted), Istio's default retries against a 503
//!   (not retried since 1.24), a pool of one connection and one waiting
//!   request (the third overflows, 503 `UO`), outlier detection ejecting the
//!   only host (503 `UH`), or keeping it under a panic threshold, and a
//!   mirror (a copy with the same Host); and,
//!   where it is random, a 50 % abort, each proxy's share within four
//!   standard deviations of half.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::{net::TcpListener, sync::Semaphore};

use super::*;

/// A route's share (`FractionalPercent`) per million.
fn per_million(v: &Value) -> u32 {
    let n = v["numerator"].as_u64().unwrap_or(0) as u32;
    match v["denominator"].as_str().unwrap_or("HUNDRED") {
        "MILLION" => n,
        "TEN_THOUSAND" => n * 100,
        _ => n * 10_000,
    }
}

/// A protobuf duration as JSON spells it (`"0.500s"`); `None` for none or 0.
fn seconds(v: &Value) -> Option<Duration> {
    let s = v.as_str()?;
    let d = mesh::duration::parse_duration(&json!(s)).unwrap();
    (!d.is_zero()).then_some(d)
}

/// Where the model and istiod differ on one field, or nothing.
fn field(
    out: &mut Vec<String>,
    count: &mut usize,
    at: &str,
    istiod: impl std::fmt::Debug,
    model: impl std::fmt::Debug,
) {
    *count += 1;
    let (i, m) = (format!("{istiod:?}"), format!("{model:?}"));
    if i != m {
        out.push(format!("{at}: istiod {i}, model {m}"));
    }
}

/// The cluster the model sends a target to, as istiod names it.
fn cluster_name(mesh: &Mesh, t: &mesh::routing::Target) -> String {
    let svc = &mesh.services[t.service.unwrap()];
    let port = svc.ports.first().copied().unwrap_or(80);
    format!(
        "outbound|{port}|{}|{}",
        t.subset.as_deref().unwrap_or(""),
        svc.fqdn
    )
}

/// A route's policy, istiod's against the model's.
fn compare_route(
    r: &Value,
    p: &mesh::policy::Policy,
    targets: &[mesh::routing::Target],
    mesh: &Mesh,
    at: &str,
    out: &mut Vec<String>,
    n: &mut usize,
) {
    let action = &r["route"];
    field(
        out,
        n,
        &format!("{at} timeout"),
        seconds(&action["timeout"]),
        p.timeout,
    );
    let retry = &action["retryPolicy"];
    let attempts = retry["numRetries"].as_u64().unwrap_or(0) as u32;
    field(
        out,
        n,
        &format!("{at} retries"),
        attempts,
        p.retries.attempts,
    );
    if attempts > 0 {
        let mut on: Vec<String> = retry["retryOn"]
            .as_str()
            .unwrap_or("")
            .split(',')
            .map(str::to_owned)
            .collect();
        on.sort();
        let mut model = p.retries.on.conditions.clone();
        model.sort();
        field(out, n, &format!("{at} retryOn"), on, model);
        let codes: Vec<u16> = retry["retriableStatusCodes"]
            .as_array()
            .map(|a| a.iter().map(|c| c.as_u64().unwrap() as u16).collect())
            .unwrap_or_default();
        field(
            out,
            n,
            &format!("{at} retriable codes"),
            codes,
            p.retries.on.status_codes.clone(),
        );
        field(
            out,
            n,
            &format!("{at} perTryTimeout"),
            seconds(&retry["perTryTimeout"]),
            p.retries.per_try_timeout,
        );
    }
    let fault = &r["typedPerFilterConfig"]["envoy.filters.http.fault"];
    let delay = fault
        .get("delay")
        .map(|d| (seconds(&d["fixedDelay"]), per_million(&d["percentage"])));
    let abort = fault.get("abort").map(|a| {
        (
            a["httpStatus"].as_u64().unwrap_or(0) as u16,
            per_million(&a["percentage"]),
        )
    });
    let model_delay = p
        .fault
        .as_ref()
        .and_then(|f| f.delay.as_ref())
        .map(|d| (Some(d.fixed), d.per_million));
    let model_abort = p
        .fault
        .as_ref()
        .and_then(|f| f.abort.as_ref())
        .map(|a| (a.status, a.per_million));
    field(out, n, &format!("{at} fault delay"), delay, model_delay);
    field(out, n, &format!("{at} fault abort"), abort, model_abort);
    let mirrors: Vec<(String, u32)> = action["requestMirrorPolicies"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        m["cluster"].as_str().unwrap().to_owned(),
                        per_million(&m["runtimeFraction"]["defaultValue"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let model_mirrors: Vec<(String, u32)> = p
        .mirrors
        .iter()
        .map(|m| (cluster_name(mesh, &m.target), m.per_million))
        .collect();
    field(out, n, &format!("{at} mirrors"), mirrors, model_mirrors);
    // Header operations: a lone destination's are the route's, a weighted
    // one's its cluster's own.
    let weighted = action["weightedClusters"]["clusters"].as_array();
    let (route_request, route_response) = match weighted {
        None => (
            p.headers.request.then(&targets[0].headers.request),
            p.headers.response.then(&targets[0].headers.response),
        ),
        Some(_) => (p.headers.request.clone(), p.headers.response.clone()),
    };
    field(
        out,
        n,
        &format!("{at} request headers"),
        ops(r, "request"),
        route_request,
    );
    field(
        out,
        n,
        &format!("{at} response headers"),
        ops(r, "response"),
        route_response,
    );
    for (k, c) in weighted.into_iter().flatten().enumerate() {
        let t = &targets[k].headers;
        field(
            out,
            n,
            &format!("{at} cluster {k} request headers"),
            ops(c, "request"),
            t.request.clone(),
        );
        field(
            out,
            n,
            &format!("{at} cluster {k} response headers"),
            ops(c, "response"),
            t.response.clone(),
        );
    }
}

/// A route's or a weighted cluster's header operations as istiod wrote them.
fn ops(v: &Value, side: &str) -> mesh::headers::Ops {
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    mesh::headers::Ops {
        remove: list(&format!("{side}HeadersToRemove"))
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect(),
        add: list(&format!("{side}HeadersToAdd"))
            .iter()
            .map(|h| {
                (
                    h["header"]["key"].as_str().unwrap().to_owned(),
                    h["header"]["value"].as_str().unwrap_or("").to_owned(),
                    h["appendAction"].as_str() != Some("OVERWRITE_IF_EXISTS_OR_ADD"),
                )
            })
            .collect(),
    }
}

/// An outbound cluster, istiod's against the model's policy for it.
fn compare_cluster(
    c: &Value,
    p: &mesh::cluster::ClusterPolicy,
    at: &str,
    out: &mut Vec<String>,
    n: &mut usize,
) {
    let t = &c["circuitBreakers"]["thresholds"][0];
    let limit = |k: &str| t[k].as_u64().map(|v| v as u32);
    for (k, model) in [
        ("maxConnections", p.pool.max_connections),
        ("maxPendingRequests", p.pool.max_pending),
        ("maxRequests", p.pool.max_requests),
        ("maxRetries", p.pool.max_retries),
    ] {
        field(out, n, &format!("{at} {k}"), limit(k), Some(model));
    }
    let per_connection =
        c["typedExtensionProtocolOptions"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
            ["commonHttpProtocolOptions"]["maxRequestsPerConnection"]
            .as_u64()
            .unwrap_or(0) as u32;
    field(
        out,
        n,
        &format!("{at} maxRequestsPerConnection"),
        per_connection,
        p.pool.max_requests_per_connection,
    );
    // Envoy's defaults for what istiod leaves unset.
    let od = c.get("outlierDetection").map(|o| {
        let num = |k: &str, d: u64| o[k].as_u64().unwrap_or(d) as u32;
        let enforced = |value: &str, enforcing: &str, enforcing_default: u64| {
            if num(enforcing, enforcing_default) == 0 {
                0
            } else {
                num(value, 5)
            }
        };
        let panic = match c.get("commonLbConfig") {
            None => 50,
            Some(l) => l["healthyPanicThreshold"]["value"].as_f64().unwrap_or(0.0) as u32,
        };
        (
            enforced("consecutive5xx", "enforcingConsecutive5xx", 100),
            enforced(
                "consecutiveGatewayFailure",
                "enforcingConsecutiveGatewayFailure",
                0,
            ),
            seconds(&o["interval"]).unwrap_or(Duration::from_secs(10)),
            seconds(&o["baseEjectionTime"]).unwrap_or(Duration::from_secs(30)),
            num("maxEjectionPercent", 10),
            panic,
        )
    });
    let model = p.outlier.as_ref().map(|o| {
        (
            o.consecutive_5xx,
            o.consecutive_gateway,
            o.interval,
            o.base_ejection_time,
            o.max_ejection_percent,
            o.panic_threshold,
        )
    });
    field(out, n, &format!("{at} outlierDetection"), od, model);
}

#[test]
#[ignore = "needs Go and istiod's module (scripts/setup): ./scripts/test runs it"]
fn every_stages_timeouts_retries_faults_mirrors_and_clusters_are_istiods() {
    let mut report = Vec::new();
    let mut wrong = Vec::new();
    // Every shipped stage, and the runtime test's own routes (header
    // operations, a weighted route, a mirror on an abort, the pools).
    let dir = super::oracle_dir();
    let lab = dir.join("lab-policy.yaml");
    std::fs::write(&lab, lab_manifests()).unwrap();
    let mut cases: Vec<(String, Vec<PathBuf>)> = stages()
        .into_iter()
        .map(|s| (s.clone(), stage_paths(&s)))
        .collect();
    cases.push(("lab".to_owned(), vec![lab]));
    for (stage, paths) in cases {
        let m = mesh::load_paths(&paths).unwrap();
        let mesh = Mesh::compile(&m);
        let export = istiod_export(&paths, &format!("policy-{stage}"));
        let (mut routes, mut clusters, mut fields) = (0, 0, 0);
        for (proxy, p) in export["proxies"].as_object().unwrap() {
            for (rc_name, rc) in p["routes"].as_object().unwrap() {
                for vh in rc["virtualHosts"].as_array().into_iter().flatten() {
                    for r in vh["routes"].as_array().into_iter().flatten() {
                        let Some(config) =
                            r["metadata"]["filterMetadata"]["istio"]["config"].as_str()
                        else {
                            continue;
                        };
                        // /apis/networking.istio.io/v1/namespaces/NS/virtual-service/NAME
                        let parts: Vec<&str> = config.rsplit('/').collect();
                        let (name, ns) = (parts[0], parts[2]);
                        let vs = m
                            .virtual_services
                            .iter()
                            .find(|v| v.metadata.name == name && v.metadata.ns() == ns)
                            .unwrap_or_else(|| panic!("{stage}: istiod's route names {config}"));
                        let route_name = r["name"].as_str().unwrap_or("");
                        let index = vs
                            .spec
                            .http
                            .iter()
                            .position(|h| h.name.as_deref() == Some(route_name))
                            .unwrap_or_else(|| {
                                panic!(
                                    "{stage}: every rule here has a name; {route_name:?} in {name}"
                                )
                            });
                        let policy = mesh.policy(ns, name, index).unwrap();
                        let at = format!("{stage} {proxy} {rc_name} {name}/{route_name}");
                        let targets = mesh.rule_targets(ns, name, index).unwrap();
                        compare_route(r, policy, targets, &mesh, &at, &mut wrong, &mut fields);
                        routes += 1;
                    }
                }
            }
            for (cname, c) in p["clusterConfigs"].as_object().unwrap() {
                let parts: Vec<&str> = cname.split('|').collect();
                let (subset, fqdn) = (parts[2], parts[3]);
                let Some(svc) = mesh.service(fqdn) else {
                    continue;
                };
                let subset = (!subset.is_empty()).then_some(subset);
                let at = format!("{stage} {proxy} {cname}");
                let ns = p["namespace"].as_str().unwrap();
                match mesh.cluster_policy(svc, subset, ns) {
                    Some(policy) => compare_cluster(c, policy, &at, &mut wrong, &mut fields),
                    None => wrong.push(format!("{at}: istiod has the cluster, the model not")),
                }
                clusters += 1;
            }
        }
        report.push(format!(
            "{stage}: {routes} routes and {clusters} clusters of istiod's, {fields} fields compared"
        ));
    }
    eprintln!("{}", report.join("\n"));
    assert!(
        wrong.is_empty(),
        "{}\n{}",
        report.join("\n"),
        wrong.join("\n")
    );
}

/// The routes of the runtime comparison, on the ingress gateway.
const LAB: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: lab, namespace: lab}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
  - name: timeout
    match: [{uri: {prefix: /slow}}]
    route: [{destination: {host: probe}}]
    timeout: 0.3s
  - name: retries
    match: [{uri: {prefix: /fail}}]
    route: [{destination: {host: probe}}]
    retries: {attempts: 3, retryOn: 5xx}
  - name: default-retries
    match: [{uri: {prefix: /unavailable}}]
    route: [{destination: {host: probe}}]
  - name: pool
    match: [{uri: {prefix: /hold}}]
    route: [{destination: {host: pool}}]
  - name: eject
    match: [{uri: {prefix: /eject}}]
    route: [{destination: {host: eject}}]
    retries: {attempts: 0}
  - name: panic
    match: [{uri: {prefix: /panic}}]
    route: [{destination: {host: panic}}]
    retries: {attempts: 0}
  - name: aborted-mirror
    match: [{uri: {prefix: /quiet}}]
    route: [{destination: {host: probe}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    mirror: {host: shadow}
  - name: headers
    match: [{uri: {prefix: /hdr-lone}}]
    headers:
      request:
        set: {x-set: route, x-order: route}
        add: {x-add: route}
        remove: [x-gone]
      response:
        set: {x-resp: route}
    route:
    - destination: {host: probe}
      headers:
        request: {set: {x-order: destination}, add: {x-add: destination}}
  - name: headers-weighted
    match: [{uri: {prefix: /hdr-weighted}}]
    headers:
      request: {set: {x-order: route}, remove: [x-dest-only]}
    route:
    - destination: {host: probe}
      weight: 100
      headers:
        request: {set: {x-order: destination, x-dest-only: destination}}
    - destination: {host: pool}
      weight: 0
  - name: mirror
    match: [{uri: {prefix: /mirrored}}]
    route: [{destination: {host: probe}}]
    mirror: {host: shadow}
  - name: coin
    match: [{uri: {prefix: /coin}}]
    route: [{destination: {host: probe}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 50}}}
  - name: rest
    route: [{destination: {host: probe}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: pool, namespace: lab}
spec:
  host: pool
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: eject, namespace: lab}
spec:
  host: eject
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: panic, namespace: lab}
spec:
  host: panic
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100, minHealthPercent: 50}
"#;

const DEPLOYMENTS: [&str; 5] = ["probe", "pool", "eject", "panic", "shadow"];

fn lab_manifests() -> String {
    LAB.to_owned() + &super::faults::stand_in_workloads("lab", &DEPLOYMENTS)
}

/// What the stand-ins saw: requests by (deployment, path), the Host of each
/// copy the shadow got, and the held requests.
struct Seen {
    requests: Mutex<HashMap<(String, String), usize>>,
    shadow_hosts: Mutex<Vec<String>>,
    held: Mutex<usize>,
    /// A permit lets one held request go.
    release: Semaphore,
}

impl Default for Seen {
    fn default() -> Self {
        Seen {
            requests: Mutex::default(),
            shadow_hosts: Mutex::default(),
            held: Mutex::default(),
            release: Semaphore::new(0),
        }
    }
}

impl Seen {
    fn count(&self, deployment: &str, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .get(&(deployment.to_owned(), path.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    fn reset(&self) {
        self.requests.lock().unwrap().clear();
        self.shadow_hosts.lock().unwrap().clear();
        *self.held.lock().unwrap() = 0;
    }
}

/// A deployment's stand-in: `/fail` and `/eject` answer 500, `/unavailable`
/// 503, `/slow` after 1 s, `/hold` when released; anything else 200.
async fn stand_in(name: &'static str, seen: Arc<Seen>) -> SocketAddr {
    use axum::{
        extract::Request,
        http::{StatusCode, header::HOST},
        response::IntoResponse,
    };
    let router = axum::Router::new().fallback(move |req: Request| {
        let seen = seen.clone();
        async move {
            let path = req.uri().path().to_owned();
            *seen
                .requests
                .lock()
                .unwrap()
                .entry((name.to_owned(), path.clone()))
                .or_default() += 1;
            if name == "shadow" {
                let host = req
                    .headers()
                    .get(HOST)
                    .map(|h| h.to_str().unwrap().to_owned());
                seen.shadow_hosts
                    .lock()
                    .unwrap()
                    .push(host.unwrap_or_default());
            }
            if path.starts_with("/hdr") {
                // The test's x- headers it got, one `name: value` line each.
                let mut lines: Vec<String> = req
                    .headers()
                    .iter()
                    .filter(|(k, _)| {
                        [
                            "x-set",
                            "x-add",
                            "x-gone",
                            "x-order",
                            "x-dest-only",
                            "x-kept",
                        ]
                        .contains(&k.as_str())
                    })
                    .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
                    .collect();
                lines.sort();
                return (StatusCode::OK, lines.join("\n")).into_response();
            }
            let status = if path.starts_with("/fail")
                || path.starts_with("/eject")
                || path.starts_with("/panic")
            {
                StatusCode::INTERNAL_SERVER_ERROR
            } else if path.starts_with("/unavailable") {
                StatusCode::SERVICE_UNAVAILABLE
            } else if path.starts_with("/slow") {
                tokio::time::sleep(Duration::from_secs(1)).await;
                StatusCode::OK
            } else if path.starts_with("/hold") {
                *seen.held.lock().unwrap() += 1;
                seen.release.acquire().await.unwrap().forget();
                StatusCode::OK
            } else {
                StatusCode::OK
            };
            status.into_response()
        }
    });
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router).await });
    addr
}

/// Status, flags (Envoy's `x-oracle-flags`, the hop's
/// `x-weather-response-flags`) and `x-envoy-overloaded` of one request.
async fn ask(http: &reqwest::Client, addr: SocketAddr, path: &str) -> (u16, String, bool) {
    let res = http
        .get(format!("http://{addr}{path}"))
        .header("host", "lab.example")
        .send()
        .await
        .unwrap();
    let h = |k: &str| res.headers().get(k).map(|v| v.to_str().unwrap().to_owned());
    let flags = h("x-oracle-flags")
        .or_else(|| h("x-weather-response-flags"))
        .unwrap_or_else(|| "-".to_owned());
    (
        res.status().as_u16(),
        flags,
        h("x-envoy-overloaded").is_some(),
    )
}

/// The observations of one proxy, to compare with the other's.
#[derive(Debug, PartialEq)]
struct Observed {
    timeout: (u16, String),
    retries: (u16, String, usize),
    default_retries: (u16, String, usize),
    /// The three held requests' answers, sorted.
    pool: Vec<(u16, String, bool)>,
    /// 500s before the first 503 UH.
    failures_before_ejection: usize,
    ejected: (u16, String),
    /// Four calls to a lone failing pod ejected after two, with
    /// `minHealthPercent: 50`: the balancer panics and keeps using it.
    panic: Vec<(u16, String)>,
    mirrored: (u16, usize, Vec<String>),
    /// What the upstream got of a route's and its lone destination's
    /// header operations (the client sent x-gone, x-add, x-kept,
    /// x-dest-only), and the response header the route sets.
    headers_lone: (String, Option<String>),
    /// The same with a weighted destination (weight 100 of 100).
    headers_weighted: (String, Option<String>),
    /// A route with an abort at 100 % and a mirror: its answer, and the
    /// copies the shadow got (none).
    aborted_mirror: (u16, String, usize),
    /// Of [`COIN`] requests under a 50 % abort, how many were aborted (FI).
    aborted: usize,
}

/// Requests sent under a 50 % abort: 4 standard deviations of a fair coin
/// are 40 of 400.
const COIN: usize = 400;

async fn observe(http: &reqwest::Client, addr: SocketAddr, seen: &Arc<Seen>) -> Observed {
    seen.reset();
    let (s, f, _) = ask(http, addr, "/slow").await;
    let timeout = (s, f);
    let (s, f, _) = ask(http, addr, "/fail").await;
    let retries = (s, f, seen.count("probe", "/fail"));
    let (s, f, _) = ask(http, addr, "/unavailable").await;
    let default_retries = (s, f, seen.count("probe", "/unavailable"));

    // One request in flight, then two more: one waits, one overflows.
    let first = {
        let http = http.clone();
        tokio::spawn(async move { ask(&http, addr, "/hold/1").await })
    };
    weather_core::testing::eventually("the first held request reaches the stand-in", async || {
        *seen.held.lock().unwrap() == 1
    })
    .await;
    let (second, third) = (
        {
            let http = http.clone();
            tokio::spawn(async move { ask(&http, addr, "/hold/2").await })
        },
        {
            let http = http.clone();
            tokio::spawn(async move { ask(&http, addr, "/hold/3").await })
        },
    );
    // The overflow is answered at once, the other waits; then the held ones go.
    let (mut second, mut third) = (second, third);
    let (overflowed, waiting) = tokio::select! {
        r = &mut second => (r.unwrap(), third),
        r = &mut third => (r.unwrap(), second),
    };
    seen.release.add_permits(2);
    let mut pool = vec![overflowed, first.await.unwrap(), waiting.await.unwrap()];
    pool.sort();

    let mut failures_before_ejection = 0;
    let mut ejected = (0, String::new());
    for _ in 0..6 {
        let (s, f, _) = ask(http, addr, "/eject").await;
        if s == 500 {
            failures_before_ejection += 1;
            continue;
        }
        ejected = (s, f);
        break;
    }

    let mut panic = Vec::new();
    for _ in 0..4 {
        let (s, f, _) = ask(http, addr, "/panic").await;
        panic.push((s, f));
    }

    let headers = async |path: &str| {
        let res = http
            .get(format!("http://{addr}{path}"))
            .header("host", "lab.example")
            .header("x-gone", "client")
            .header("x-add", "client")
            .header("x-kept", "client")
            .header("x-dest-only", "client")
            .send()
            .await
            .unwrap();
        let resp = res
            .headers()
            .get("x-resp")
            .map(|v| v.to_str().unwrap().to_owned());
        (res.text().await.unwrap(), resp)
    };
    let headers_lone = headers("/hdr-lone").await;
    let headers_weighted = headers("/hdr-weighted").await;

    // An abort comes first: the router, which sends the copy, never runs.
    let (qs, qf, _) = ask(http, addr, "/quiet").await;
    let (s, _, _) = ask(http, addr, "/mirrored").await;
    weather_core::testing::eventually("the copy reaches the shadow", async || {
        seen.count("shadow", "/mirrored") >= 1
    })
    .await;
    let mirrored = (
        s,
        seen.count("shadow", "/mirrored"),
        seen.shadow_hosts.lock().unwrap().clone(),
    );
    let aborted_mirror = (qs, qf, seen.count("shadow", "/quiet"));
    let mut aborted = 0;
    for _ in 0..COIN {
        let (s, f, _) = ask(http, addr, "/coin").await;
        if (s, f.as_str()) == (503, "FI") {
            aborted += 1;
        }
    }
    Observed {
        headers_lone,
        headers_weighted,
        aborted_mirror,
        panic,
        aborted,
        timeout,
        retries,
        default_retries,
        pool,
        failures_before_ejection,
        ejected,
        mirrored,
    }
}

#[test]
#[ignore = "needs Go, istiod's module and Envoy (scripts/setup): ./scripts/test runs it"]
fn timeouts_retries_pools_ejection_and_mirrors_act_as_in_envoy() {
    let dir = super::oracle_dir();
    let file = dir.join("lab.yaml");
    std::fs::write(&file, lab_manifests()).unwrap();
    let export = istiod_export(std::slice::from_ref(&file), "lab");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let seen = Arc::new(Seen::default());
    let pods: HashMap<String, SocketAddr> = rt.block_on(async {
        let mut pods = HashMap::new();
        for name in DEPLOYMENTS {
            pods.insert(name.to_owned(), stand_in(name, seen.clone()).await);
        }
        pods
    });
    let envoy = envoy::start_envoy_setup(
        &export,
        &|cluster| {
            // outbound|8080||NAME.lab.svc.cluster.local; anything else (Istio's
            // own clusters) to the probe.
            let host = cluster.split('|').nth(3).and_then(|h| h.split('.').next());
            pods[host.filter(|h| pods.contains_key(*h)).unwrap_or("probe")]
        },
        "lab",
        envoy::Setup {
            faults: true,
            istiod_clusters: true,
        },
    );
    let envoy_addr = envoy.listeners[&("ingress".to_owned(), "http.80".to_owned())];

    let hop = super::faults::ingress_hop(&rt, &lab_manifests(), pods.clone());
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let by_envoy = rt.block_on(observe(&http, envoy_addr, &seen));
    let by_hop = rt.block_on(observe(&http, hop.addr, &seen));
    eprintln!("Envoy: {by_envoy:?}\nhop:   {by_hop:?}");
    // What Istio's settings promise, seen in Envoy; then the hop alike.
    assert_eq!(by_envoy.timeout, (504, "UT".to_owned()));
    assert_eq!(by_envoy.retries, (500, "URX".to_owned(), 4));
    assert_eq!(by_envoy.default_retries, (503, "-".to_owned(), 1));
    assert_eq!(by_envoy.pool[2], (503, "UO".to_owned(), true));
    assert_eq!(by_envoy.ejected, (503, "UH".to_owned()));
    assert_eq!(by_envoy.panic, vec![(500, "-".to_owned()); 4]);
    assert_eq!(by_envoy.mirrored, (200, 1, vec!["lab.example".to_owned()]));
    assert_eq!(by_envoy.aborted_mirror, (503, "FI".to_owned(), 0));
    // Envoy ejects on its main thread, a moment after the second 500: a
    // request sent at once may still reach the host.
    assert!(
        (2..=3).contains(&by_envoy.failures_before_ejection),
        "{by_envoy:?}"
    );
    // A share, random in both: each within 4 standard deviations of half.
    for (who, o) in [("Envoy", &by_envoy), ("the hop", &by_hop)] {
        assert!(
            (COIN / 2 - 40..=COIN / 2 + 40).contains(&o.aborted),
            "{who} aborted {} of {COIN}",
            o.aborted
        );
    }
    let same = Observed {
        failures_before_ejection: by_envoy.failures_before_ejection.min(2),
        aborted: by_hop.aborted,
        ..by_envoy
    };
    assert_eq!(by_hop, same);
    drop(envoy);
}
