//! Server bootstrap. [`service`] wraps a service's routes with what every service
//! serves (DESIGN.md contract 3) and the layers every request passes (chain header,
//! metrics, access log, request timeout); [`spawn`] serves a router on a bound
//! listener (tests and `weather up` use it); [`run`] is a binary's whole `main`:
//! logging, bind, serve, and a graceful drain on SIGTERM.

use std::{
    net::SocketAddr,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::Response,
    routing::get,
};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tower_http::timeout::TimeoutLayer;

use opentelemetry::{
    KeyValue,
    context::FutureExt,
    propagation::TextMapPropagator,
    trace::{SpanKind, TraceContextExt},
};

use crate::{
    chain,
    config::{AppArgs, AppVersion, ServeArgs},
    error::json_error,
    metrics::Metrics,
    telemetry::{self, Telemetry},
};

/// Which service this is and which release of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppInfo {
    pub app: &'static str,
    pub version: AppVersion,
}

/// Readiness, shared by `/readyz` and the shutdown sequence: a draining service
/// answers 503 so that Kubernetes takes it out of the endpoints before it stops.
#[derive(Clone, Debug, Default)]
pub struct Health {
    draining: Arc<AtomicBool>,
}

impl Health {
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

#[derive(Clone)]
struct Observe {
    chain: HeaderValue,
    metrics: Metrics,
    telemetry: Telemetry,
}

/// Adds `/healthz`, `/readyz`, `/version` and `/metrics` to a service's routes and
/// the layers every request passes (the routes' own fallback included).
pub fn service(
    app: &'static str,
    args: &AppArgs,
    health: Health,
    telemetry: Telemetry,
    routes: Router,
) -> Router {
    let info = AppInfo {
        app,
        version: args.app_version,
    };
    let metrics = Metrics::new(info.app, info.version.as_str());
    let observe = Observe {
        chain: HeaderValue::try_from(format!("{}:{}", info.app, info.version))
            .expect("app names are ASCII"),
        metrics: metrics.clone(),
        telemetry,
    };
    let version = serde_json::json!({ "app": info.app, "version": info.version });
    routes
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route(
            "/readyz",
            get(move || {
                let ready = health.is_ready();
                async move {
                    if ready {
                        (StatusCode::OK, Json(serde_json::json!({"status": "ready"})))
                    } else {
                        let body = serde_json::json!({"status": "draining"});
                        (StatusCode::SERVICE_UNAVAILABLE, Json(body))
                    }
                }
            }),
        )
        .route("/version", get(move || async move { Json(version) }))
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            args.request_timeout(),
        ))
        .layer(middleware::from_fn_with_state(observe, observe_request))
}

/// Opens the server span (a child of the caller's trace context), stamps the
/// chain header, records metrics and writes one access-log line.
async fn observe_request(State(o): State<Observe>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route_label = route.as_ref().map(|r| r.as_str()).unwrap_or("unmatched");
    let parent = telemetry::propagator().extract(&telemetry::HeaderExtractor(req.headers()));
    // Without an exporter the caller's context passes through as it came, and
    // no span is built at all: nothing would read it.
    let cx = if o.telemetry.is_exporting() {
        let span = server_span(&o.telemetry, &req, &method, route_label, &parent);
        parent.with_span(span)
    } else {
        parent
    };
    let mut res = next.run(req).with_context(cx.clone()).await;
    chain::stamp(&o.chain, &mut res);
    let elapsed = start.elapsed();
    let status = res.status().as_u16();
    let span = cx.span();
    if o.telemetry.is_exporting() {
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            span.set_status(opentelemetry::trace::Status::error(format!(
                "HTTP {status}"
            )));
        }
        span.end();
    }
    o.metrics
        .record(method.as_str(), route_label, status, elapsed);
    let latency_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
    if matches!(route_label, "/healthz" | "/readyz" | "/metrics") {
        tracing::debug!(%method, route = route_label, status, latency_ms, "request");
    } else if tracing::enabled!(tracing::Level::INFO) {
        // The line leads to its trace when the request belongs to one.
        let sc = span.span_context();
        if sc.is_valid() {
            let (trace_id, span_id) = (sc.trace_id().to_string(), sc.span_id().to_string());
            tracing::info!(%method, route = route_label, status, latency_ms, trace_id, span_id, "request");
        } else {
            tracing::info!(%method, route = route_label, status, latency_ms, "request");
        }
    }
    res
}

/// The server span of a request, named by its route, with the standard HTTP
/// attributes.
fn server_span(
    t: &Telemetry,
    req: &Request,
    method: &axum::http::Method,
    route: &str,
    parent: &opentelemetry::Context,
) -> opentelemetry::global::BoxedSpan {
    let mut attributes = vec![
        KeyValue::new("http.request.method", method.to_string()),
        KeyValue::new("url.path", req.uri().path().to_owned()),
        KeyValue::new("url.scheme", "http"),
        KeyValue::new("http.route", route.to_owned()),
    ];
    if let Some(q) = req.uri().query() {
        attributes.push(KeyValue::new("url.query", q.to_owned()));
    }
    if let Some(ua) = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        attributes.push(KeyValue::new("user_agent.original", ua.to_owned()));
    }
    t.start(
        format!("{method} {route}"),
        SpanKind::Server,
        attributes,
        req.headers(),
        parent,
    )
}

/// The JSON APIs' fallback: an unknown path is a 404 that says so.
pub async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "no such route")
}

/// A router being served in the background on a bound listener.
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// `http://ADDR`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets in-flight requests finish, and waits for them.
    pub async fn shutdown(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

/// Serves `router` on `listener` until [`RunningServer::shutdown`].
pub fn spawn(listener: TcpListener, router: Router) -> std::io::Result<RunningServer> {
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    Ok(RunningServer { addr, stop, task })
}

/// Like [`spawn`], with the peer's address available to handlers as
/// `ConnectInfo<SocketAddr>` (a proxy needs it for `x-forwarded-for`).
pub fn spawn_with_connect_info(
    listener: TcpListener,
    router: Router,
) -> std::io::Result<RunningServer> {
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await
    });
    Ok(RunningServer { addr, stop, task })
}

/// Binds `127.0.0.1:0` and serves `router`: a test's one-liner.
pub async fn spawn_local(router: Router) -> std::io::Result<RunningServer> {
    spawn(TcpListener::bind("127.0.0.1:0").await?, router)
}

/// A service binary's `main`: logs, binds, serves, drains on SIGTERM and exits 0.
/// `build` gets the readiness handle the drain flips.
pub async fn run(
    info: AppInfo,
    default_port: u16,
    serve: ServeArgs,
    build: impl FnOnce(Health) -> Router,
) -> ExitCode {
    telemetry::init();
    let health = Health::default();
    let router = build(health.clone());
    let addr = SocketAddr::new(serve.host, serve.port.unwrap_or(default_port));
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{}: cannot listen on {addr}: {e}", info.app);
            return ExitCode::FAILURE;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(app = info.app, version = %info.version, %bound, "listening");
    let drain = serve.shutdown_delay();
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal(health, drain))
        .await;
    // Send the spans still buffered before the process ends.
    let _ = tokio::task::spawn_blocking(telemetry::shutdown_all).await;
    match result {
        Ok(()) => {
            tracing::info!(app = info.app, "stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: server error: {e}", info.app);
            ExitCode::FAILURE
        }
    }
}

/// Resolves when the server should stop accepting. On SIGTERM readiness turns 503
/// for `drain` first, so the endpoint is removed before the listener closes;
/// Ctrl-C stops at once. Either way in-flight requests finish.
async fn shutdown_signal(health: Health, drain: Duration) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {
            health.start_draining();
            tracing::info!("interrupted: finishing in-flight requests");
        }
        () = term => {
            health.start_draining();
            tracing::info!(drain_ms = drain.as_millis() as u64, "SIGTERM: readiness is now 503, draining");
            tokio::time::sleep(drain).await;
        }
    }
}
