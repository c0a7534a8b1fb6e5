//! The local data plane of `weather up`: every Deployment's workload runs
//! in-process on its own loopback port (its "pod"), an ingress listener stands for
//! Istio's ingress gateway, and each workload gets an outbound listener per
//! service it calls, standing for its sidecar, so that `sourceLabels` sees the real
//! caller. Requests are routed by the mesh model, compiled once per applied stage,
//! and proxied with pooled keep-alive connections, streaming bodies both ways.

use std::{
    borrow::Cow,
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, State},
    http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, header},
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use mesh::{
    Manifests, Mesh, Routed,
    model::Labels,
    routing::{Caller, HeaderLookup, Target, join_values},
};
use opentelemetry::{
    KeyValue,
    propagation::TextMapPropagator,
    trace::{SpanKind, Status, TraceContextExt},
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use weather_core::{
    Health,
    server::RunningServer,
    telemetry::{HeaderExtractor, HeaderInjector, Telemetry, TelemetryArgs, propagator},
};

use crate::workloads::{self, parse_image};

/// How long an upstream may take to answer (headers) before a 504 (`UT`).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(15);

/// The routing table in force: the compiled mesh and the address of each of its
/// workloads (by index), swapped whole when a stage is applied.
pub struct Table {
    pub mesh: Mesh,
    addrs: Vec<Option<SocketAddr>>,
    pub stage: Option<String>,
}

pub struct Plane {
    table: RwLock<Arc<Table>>,
    /// Workload name -> the address its app listens on.
    pods: HashMap<String, SocketAddr>,
    client: Client<HttpConnector, Body>,
    next: AtomicUsize,
    access_log: bool,
}

/// What `weather up` starts from.
#[derive(Clone, Debug)]
pub struct Options {
    pub paths: Vec<PathBuf>,
    pub stage: Option<String>,
    pub listen: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub access_log: bool,
    /// Where the proxy hops and the workloads send their spans.
    pub telemetry: TelemetryArgs,
}

/// A running data plane.
pub struct Running {
    pub ingress: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub plane: Arc<Plane>,
    servers: Vec<RunningServer>,
    watcher: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    /// The manifests in force, for reloads.
    paths: Arc<RwLock<(Vec<PathBuf>, Option<String>)>>,
    pub workloads: Vec<(String, SocketAddr)>,
}

fn load(paths: &[PathBuf]) -> Result<Manifests, String> {
    mesh::load_paths(paths).map_err(|errors| {
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// Which caller a listener stands for.
#[derive(Clone)]
enum Source {
    Ingress,
    Workload {
        name: String,
        namespace: String,
        labels: Labels,
        authority: String,
    },
}

struct Listener {
    plane: Arc<Plane>,
    source: Source,
    /// The proxy's own tracer: `istio-ingressgateway.istio-system`, or
    /// `APP.NAMESPACE` for a sidecar, as Istio's proxies report.
    telemetry: Telemetry,
}

pub async fn start(opts: Options) -> Result<Running, String> {
    let manifests = load(&opts.paths)?;
    for w in &manifests.warnings {
        tracing::warn!("{w}");
    }
    let mesh = Mesh::compile(&manifests);
    for e in &mesh.errors {
        tracing::warn!("{e}");
    }
    if manifests.deployments.is_empty() {
        return Err("the manifests have no Deployments: nothing to run (pass k8s/ with -f)".into());
    }

    // Bind every pod first: the outbound listeners need nothing but addresses.
    let mut pods = HashMap::new();
    let mut pod_listeners = Vec::new();
    for d in &manifests.deployments {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind a loopback port: {e}"))?;
        pods.insert(
            d.metadata.name.clone(),
            l.local_addr().map_err(|e| e.to_string())?,
        );
        pod_listeners.push(l);
    }
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build_http();
    let addrs = mesh
        .workloads
        .iter()
        .map(|w| pods.get(&w.name).copied())
        .collect();
    let plane = Arc::new(Plane {
        table: RwLock::new(Arc::new(Table {
            mesh,
            addrs,
            stage: opts.stage.clone(),
        })),
        pods: pods.clone(),
        client,
        next: AtomicUsize::new(0),
        access_log: opts.access_log,
    });

    let mut servers = Vec::new();
    let mut workloads_started = Vec::new();
    for (d, pod) in manifests.deployments.iter().zip(pod_listeners) {
        let c = d
            .spec
            .template
            .spec
            .containers
            .first()
            .ok_or_else(|| format!("Deployment {}: no containers", d.metadata.name))?;
        let (app, image_version) =
            parse_image(&c.image).map_err(|e| format!("Deployment {}: {e}", d.metadata.name))?;
        // The cluster's telemetry settings point at the cluster's collector; a
        // local run uses weather up's own.
        let mut env: Vec<(String, String)> = c
            .env
            .iter()
            .filter(|e| !e.name.starts_with("OTEL_"))
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect();
        if let Some(e) = &opts.telemetry.otlp_endpoint {
            env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), e.clone()));
        }
        if let Some(e) = &opts.telemetry.otlp_traces_endpoint {
            env.push(("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".into(), e.clone()));
        }
        if opts.telemetry.otel_sdk_disabled {
            env.push(("OTEL_SDK_DISABLED".into(), "true".into()));
        }
        let version = match env.iter().find(|(k, _)| k == "APP_VERSION") {
            Some((_, v)) => v
                .parse()
                .map_err(|e| format!("Deployment {}: APP_VERSION: {e}", d.metadata.name))?,
            None => image_version,
        };
        // The outbound "sidecar": the app's downstream URL now points at a
        // listener that routes as this workload's Envoy would.
        if let Some((var, default)) = app.downstream(version) {
            let url = env
                .iter()
                .find(|(k, _)| k == var)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| default.to_owned());
            let authority = url
                .strip_prefix("http://")
                .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
                .ok_or_else(|| {
                    format!(
                        "Deployment {}: {var}={url} is not an http:// URL",
                        d.metadata.name
                    )
                })?;
            let out = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| e.to_string())?;
            let out_addr = out.local_addr().map_err(|e| e.to_string())?;
            let labels = &d.spec.template.metadata.labels;
            let sidecar = format!(
                "{}.{}",
                labels
                    .get("app")
                    .cloned()
                    .unwrap_or_else(|| d.metadata.name.clone()),
                d.metadata.ns()
            );
            let listener = Listener {
                telemetry: Telemetry::new(
                    &sidecar,
                    version.as_str(),
                    &opts.telemetry,
                    &[
                        ("k8s.pod.name", d.metadata.name.clone()),
                        ("component", "proxy".into()),
                    ],
                ),
                plane: plane.clone(),
                source: Source::Workload {
                    name: d.metadata.name.clone(),
                    namespace: d.metadata.ns().to_owned(),
                    labels: d.spec.template.metadata.labels.clone(),
                    authority,
                },
            };
            servers.push(serve(out, listener)?);
            env.retain(|(k, _)| k != var);
            env.push((var.to_owned(), format!("http://{out_addr}")));
        }
        let router = workloads::router(app, version, &env, Health::default())
            .map_err(|e| format!("Deployment {}: {e}", d.metadata.name))?;
        let addr = pod.local_addr().map_err(|e| e.to_string())?;
        servers.push(weather_core::server::spawn(pod, router).map_err(|e| e.to_string())?);
        workloads_started.push((d.metadata.name.clone(), addr));
    }

    let ingress = TcpListener::bind(opts.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", opts.listen))?;
    let ingress_addr = ingress.local_addr().map_err(|e| e.to_string())?;
    let gateway = Telemetry::new(
        "istio-ingressgateway.istio-system",
        "",
        &opts.telemetry,
        &[("component", "proxy".into())],
    );
    servers.push(serve(
        ingress,
        Listener {
            plane: plane.clone(),
            source: Source::Ingress,
            telemetry: gateway,
        },
    )?);

    let paths = Arc::new(RwLock::new((opts.paths.clone(), opts.stage.clone())));
    let mut admin_addr = None;
    if let Some(a) = opts.admin {
        let l = TcpListener::bind(a)
            .await
            .map_err(|e| format!("cannot listen on {a} (admin): {e}"))?;
        admin_addr = Some(l.local_addr().map_err(|e| e.to_string())?);
        servers.push(
            weather_core::server::spawn(l, crate::admin::router(plane.clone(), paths.clone()))
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(Running {
        ingress: ingress_addr,
        admin: admin_addr,
        plane,
        servers,
        watcher: None,
        paths,
        workloads: workloads_started,
    })
}

fn serve(listener: TcpListener, l: Listener) -> Result<RunningServer, String> {
    let app = Router::new().fallback(proxy).with_state(Arc::new(l));
    weather_core::server::spawn_with_connect_info(listener, app).map_err(|e| e.to_string())
}

impl Running {
    /// Watches the manifest files and applies them again when one changes.
    pub fn watch(&mut self, every: Duration) {
        let (stop, mut stopped) = watch::channel(false);
        let plane = self.plane.clone();
        let paths = self.paths.clone();
        let task = tokio::spawn(async move {
            let mut last = newest(&paths.read().unwrap_or_else(|e| e.into_inner()).0);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped.changed() => return,
                }
                let (current, stage) = paths.read().unwrap_or_else(|e| e.into_inner()).clone();
                let now = newest(&current);
                if now != last {
                    last = now;
                    match plane.apply(&current, stage) {
                        Ok(summary) => tracing::info!("manifests changed: {summary}"),
                        Err(e) => tracing::error!(
                            "manifests changed but cannot be applied, keeping the routes in force:\n{e}"
                        ),
                    }
                }
            }
        });
        self.watcher = Some((stop, task));
    }

    /// Applies other manifests (a stage switch) without dropping requests.
    pub fn apply(&self, paths: Vec<PathBuf>, stage: Option<String>) -> Result<String, String> {
        let summary = self.plane.apply(&paths, stage.clone())?;
        *self.paths.write().unwrap_or_else(|e| e.into_inner()) = (paths, stage);
        Ok(summary)
    }

    pub async fn shutdown(self) {
        if let Some((stop, task)) = self.watcher {
            let _ = stop.send(true);
            let _ = task.await;
        }
        for s in self.servers.into_iter().rev() {
            let _ = s.shutdown().await;
        }
    }
}

/// The newest modification time among the files under `paths`.
fn newest(paths: &[PathBuf]) -> Option<SystemTime> {
    let mut newest = None;
    for p in paths {
        let files: Vec<PathBuf> = if p.is_dir() {
            std::fs::read_dir(p)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default()
        } else {
            vec![p.clone()]
        };
        for f in files {
            if let Ok(t) = std::fs::metadata(&f).and_then(|m| m.modified()) {
                newest = newest.max(Some(t));
            }
        }
    }
    newest
}

impl Plane {
    pub fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Loads and compiles manifests, then swaps the routing table. In-flight
    /// requests finish on the table they started with.
    pub fn apply(&self, paths: &[PathBuf], stage: Option<String>) -> Result<String, String> {
        let manifests = load(paths)?;
        let mesh = Mesh::compile(&manifests);
        if !mesh.errors.is_empty() {
            return Err(mesh.errors.join("\n"));
        }
        let missing: Vec<&str> = mesh
            .workloads
            .iter()
            .filter(|w| !self.pods.contains_key(&w.name))
            .map(|w| w.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "new workloads ({}) need a restart of weather up",
                missing.join(", ")
            ));
        }
        let addrs = mesh
            .workloads
            .iter()
            .map(|w| self.pods.get(&w.name).copied())
            .collect();
        let n = manifests.virtual_services.len();
        let summary = format!(
            "applied {}{n} VirtualServices",
            stage
                .as_deref()
                .map(|s| format!("stage {s}: "))
                .unwrap_or_default()
        );
        *self.table.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(Table { mesh, addrs, stage });
        Ok(summary)
    }
}

/// Request headers for the routing model; several values of a header are joined
/// with "," as Envoy joins them before matching.
struct Headers<'a>(&'a HeaderMap);

impl HeaderLookup for Headers<'_> {
    fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        join_values(self.0.get_all(name).iter().filter_map(|v| v.to_str().ok()))
    }
}

/// Headers that concern one connection only and are never forwarded (RFC 9110).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::try_from(n.trim()).ok())
        .collect();
    for n in HOP_BY_HOP.iter().chain(named.iter()) {
        h.remove(n);
    }
}

/// One hop: route, pick, forward, log.
async fn proxy(
    State(l): State<Arc<Listener>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request<Body>,
) -> Response<Body> {
    let start = Instant::now();
    let table = l.plane.table();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let authority: String = match &l.source {
        Source::Workload { authority, .. } => authority.clone(),
        Source::Ingress => req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("")
            .to_owned(),
    };
    let (caller, from) = match &l.source {
        Source::Ingress => (Caller::Ingress, "ingress"),
        Source::Workload {
            name,
            namespace,
            labels,
            ..
        } => (Caller::Workload { namespace, labels }, name.as_str()),
    };
    let routed = {
        let headers = Headers(req.headers());
        let mreq = mesh::Request {
            authority: &authority,
            path: &path,
            method: req.method().as_str(),
            scheme: "http",
            headers: &headers,
        };
        table.mesh.route(caller, &mreq)
    };
    let method = req.method().clone();
    // The proxy's span, like an Envoy's: a child of the caller's context, the
    // parent of the upstream's server span.
    let exporting = l.telemetry.is_exporting();
    // Without an exporter the trace headers pass through untouched, as they came.
    let parent = if exporting {
        propagator().extract(&HeaderExtractor(req.headers()))
    } else {
        opentelemetry::Context::new()
    };
    // Names for the log line and the span, built only when one of them is on.
    let verbose = exporting || l.plane.access_log;
    let cx = if exporting {
        parent.with_span(proxy_span(
            &l.telemetry,
            &req,
            &authority,
            &path,
            from,
            &parent,
        ))
    } else {
        parent
    };
    let log = |status: u16, flags: &str, to: &str, rule: &str| {
        if exporting {
            let span = cx.span();
            span.set_attribute(KeyValue::new("http.status_code", i64::from(status)));
            span.set_attribute(KeyValue::new("response_flags", flags.to_owned()));
            if status >= 500 {
                span.set_status(Status::error(format!("{status} {flags}")));
            }
            span.end();
        }
        if l.plane.access_log {
            tracing::info!(
                target: "weather::access",
                "\"{method} {path}\" {status} {flags} from={from} to={to} rule={rule} {:.1}ms",
                start.elapsed().as_secs_f64() * 1e3
            );
        }
    };
    let (rule, targets) = match routed {
        Routed::NoRoute(why) => {
            log(404, "NR", "-", "-");
            return envoy_error(StatusCode::NOT_FOUND, "NR", &format!("no route: {why:?}"));
        }
        Routed::Route { rule, targets } => (
            match (verbose, rule) {
                (false, _) => String::new(),
                (true, Some(r)) => r.to_string(),
                (true, None) => "default".into(),
            },
            targets,
        ),
    };
    let total = Routed::total(targets);
    let Some(target) = (total > 0)
        .then(|| Routed::pick(targets, fastrand::u32(..total)))
        .flatten()
    else {
        log(503, "NC", "-", &rule);
        return envoy_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "NC",
            "every destination has weight 0",
        );
    };
    let to = if verbose {
        describe(target)
    } else {
        String::new()
    };
    if exporting && let Some(svc) = target.service.and_then(|i| table.mesh.services.get(i)) {
        let port = svc.ports.first().copied().unwrap_or(80);
        cx.span().update_name(format!("{}:{port}/*", svc.fqdn));
        let subset = target.subset.as_deref().unwrap_or("");
        cx.span().set_attribute(KeyValue::new(
            "upstream_cluster",
            format!("outbound|{port}|{subset}|{}", svc.fqdn),
        ));
    }
    if let Some(p) = &target.problem {
        log(503, p.flag(), &to, &rule);
        return envoy_error(
            StatusCode::SERVICE_UNAVAILABLE,
            p.flag(),
            &format!("{to}: {p:?}"),
        );
    }

    // The request as the upstream sees it.
    strip_hop_by_hop(req.headers_mut());
    let headers = req.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&authority) {
        headers.insert(header::HOST, v);
    }
    if exporting {
        propagator().inject_context(&cx, &mut HeaderInjector(headers));
    }
    if matches!(l.source, Source::Ingress) {
        // Envoy at the edge: a request id when there is none, and who called.
        if !headers.contains_key("x-request-id")
            && let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
        {
            headers.insert("x-request-id", v);
        }
        let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) => format!("{prev}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            headers.insert("x-forwarded-for", v);
        }
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }

    // Pick an endpoint; on a refused connection, try the next one once.
    let endpoints: Vec<SocketAddr> = target
        .endpoints
        .iter()
        .filter_map(|&i| table.addrs.get(i).copied().flatten())
        .collect();
    if endpoints.is_empty() {
        log(503, "UH", &to, &rule);
        return envoy_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UH",
            &format!("{to}: no healthy upstream"),
        );
    }
    let first = l.plane.next.fetch_add(1, Ordering::Relaxed) % endpoints.len();
    // A body can be sent once, so only a request without one is retried, and
    // only when the connection was refused (nothing reached the upstream).
    let bodiless = !req.headers().contains_key(header::CONTENT_LENGTH)
        && !req.headers().contains_key(header::TRANSFER_ENCODING);
    let (parts, body) = req.into_parts();
    let mut body = Some(body);
    let attempts = if bodiless { 2 } else { 1 };
    for attempt in 0..attempts {
        let addr = endpoints[(first + attempt) % endpoints.len()];
        let Ok(uri) = Uri::try_from(format!("http://{addr}{path}")) else {
            log(400, "-", &to, &rule);
            return envoy_error(StatusCode::BAD_REQUEST, "-", "bad request path");
        };
        let mut up = Request::from_parts(parts.clone(), body.take().unwrap_or_else(Body::empty));
        *up.uri_mut() = uri;
        match tokio::time::timeout(UPSTREAM_TIMEOUT, l.plane.client.request(up)).await {
            Ok(Ok(res)) => {
                let (mut parts, incoming) = res.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                if exporting {
                    cx.span()
                        .set_attribute(KeyValue::new("upstream_host", addr.to_string()));
                }
                let to = if verbose { format!("{to} {addr}") } else { to };
                log(parts.status.as_u16(), "-", &to, &rule);
                return Response::from_parts(parts, Body::new(incoming));
            }
            Ok(Err(e)) if e.is_connect() && attempt + 1 < attempts => {
                tracing::debug!("connect to {addr} failed, retrying: {e}");
            }
            Ok(Err(e)) => {
                log(503, "UF", &to, &rule);
                return envoy_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UF",
                    &format!("upstream connect error: {e}"),
                );
            }
            Err(_) => {
                log(504, "UT", &to, &rule);
                return envoy_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "UT",
                    "upstream request timeout",
                );
            }
        }
    }
    log(503, "UF", &to, &rule);
    envoy_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "UF",
        "upstream connect error",
    )
}

/// The proxy's span, like an Envoy's: a child of the caller's context, the
/// parent of the upstream's server span.
fn proxy_span(
    t: &Telemetry,
    req: &Request<Body>,
    authority: &str,
    path: &str,
    from: &str,
    parent: &opentelemetry::Context,
) -> opentelemetry::global::BoxedSpan {
    let attributes = vec![
        KeyValue::new("component", "proxy"),
        KeyValue::new("http.method", req.method().to_string()),
        KeyValue::new("http.url", format!("http://{authority}{path}")),
        KeyValue::new("downstream_cluster", from.to_owned()),
    ];
    t.start(
        format!("{authority}/*"),
        SpanKind::Client,
        attributes,
        req.headers(),
        parent,
    )
}

fn describe(t: &Target) -> String {
    match &t.subset {
        Some(s) => format!("{}|{s}", t.host),
        None => t.host.clone(),
    }
}

/// The plain-text answers Envoy gives when it cannot route.
fn envoy_error(status: StatusCode, flag: &str, detail: &str) -> Response<Body> {
    let mut res = Response::new(Body::from(format!("{detail}\n")));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if let Ok(v) = HeaderValue::from_str(flag) {
        res.headers_mut().insert("x-weather-response-flags", v);
    }
    res
}
