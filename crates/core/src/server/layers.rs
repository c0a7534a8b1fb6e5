//! What every service serves (`/healthz`, `/readyz`, `/version`, `/metrics`;
//! docs/architecture.md, "Contracts") and the layers every request passes: the
//! server span, the chain header, metrics, the access log and a request timeout.

use std::time::Instant;

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use opentelemetry::{
    KeyValue,
    context::FutureExt,
    propagation::TextMapPropagator,
    trace::{SpanKind, TraceContextExt},
};

use super::lifecycle::{AppInfo, Health};
use crate::{
    chain,
    config::{AppArgs, FaultArgs},
    error::json_error,
    json::Json,
    metrics::Metrics,
    telemetry::{self, Telemetry},
};

#[derive(Clone)]
struct Observe {
    chain: HeaderValue,
    metrics: Metrics,
    telemetry: Telemetry,
    body: BodyBounds,
    timeout: std::time::Duration,
    /// At most MAX_IN_FLIGHT of the app's own requests are handled at once;
    /// the rest wait their turn on their connection. The standard routes
    /// never wait behind them (a probe stays a probe).
    in_flight: std::sync::Arc<tokio::sync::Semaphore>,
    /// FAULT_DELAY_MS and FAULT_ERROR_RATE, when either is set: the app's own
    /// routes only, before they take their turn (a delayed request waits as
    /// a slow network would, holding no turn).
    fault: Option<FaultArgs>,
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
        chain: chain::link(info.app, info.version),
        metrics: metrics.clone(),
        telemetry,
        body: args.body_bounds(MAX_BODY),
        timeout: args.request_timeout(),
        in_flight: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
        fault: args.fault.any().then(|| args.fault.clone()),
    };
    let version = serde_json::json!({ "app": info.app, "version": info.version });
    if let Some(f) = &observe.fault {
        tracing::warn!(
            error_rate = f.fault_error_rate,
            delay_ms = f.fault_delay_ms,
            "fault injection is on (FAULT_ERROR_RATE, FAULT_DELAY_MS)"
        );
    }
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
        .layer(middleware::from_fn_with_state(observe, observe_request))
}

/// How many of an app's requests are handled at once. Past it a request
/// waits, holding nothing but its connection: memory stays bounded however
/// many clients connect (README, "Benchmarks"), and on two cores
/// 64 requests in flight keep every core busy.
pub const MAX_IN_FLIGHT: usize = 64;

/// The largest request body a service takes on any route (a route can allow
/// less with its own [`bounded_body`]).
pub const MAX_BODY: usize = 64 * 1024;

/// What a route takes of a request body.
#[derive(Clone, Copy, Debug)]
pub struct BodyBounds {
    /// Bytes (413 past them).
    pub limit: usize,
    /// To send it, once the head is in (408 past it): `BODY_TIMEOUT_MS`.
    pub timeout: std::time::Duration,
}

/// Reads a request's body whole, within its bounds, before the handler runs: 413 at once when the
/// declared length is over the limit (nothing is read), 413 when the body
/// grows past it, 408 when it does not arrive in time, 400 when it breaks
/// off. A bodiless request passes untouched. A layer:
/// `middleware::from_fn_with_state(args.body_bounds(limit), bounded_body)`.
pub async fn bounded_body(State(b): State<BodyBounds>, req: Request, next: Next) -> Response {
    match read_body(b, req).await {
        Ok(req) => next.run(req).await,
        Err(refused) => refused,
    }
}

/// [`bounded_body`]'s work: the request with its body read, or the answer
/// that refuses it.
async fn read_body(b: BodyBounds, req: Request) -> Result<Request, Response> {
    let limit = b.limit;
    use http_body::Body as _;
    use http_body_util::BodyExt;
    if req.body().is_end_stream() {
        return Ok(req);
    }
    let too_large = || {
        let mut res = json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the request body is over {limit} bytes"),
        );
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        res
    };
    // An outer bound read it already: only its size is left to check.
    if req.extensions().get::<BodyRead>().is_some() {
        if req.body().size_hint().lower() > limit as u64 {
            return Err(too_large());
        }
        return Ok(req);
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let read = http_body_util::Limited::new(body, limit).collect();
    let bytes = match tokio::time::timeout(b.timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Ok(Err(_)) => {
            return Err(json_error(
                StatusCode::BAD_REQUEST,
                "the request body broke off",
            ));
        }
        Err(_) => {
            let mut res = json_error(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "the request body did not arrive within {} ms (BODY_TIMEOUT_MS)",
                    b.timeout.as_millis()
                ),
            );
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Err(res);
        }
    };
    let mut req = Request::from_parts(parts, axum::body::Body::from(bytes));
    req.extensions_mut().insert(BodyRead);
    Ok(req)
}

/// Marks a request whose body [`bounded_body`] has read into memory.
#[derive(Clone, Copy)]
struct BodyRead;

/// The failure switches: the delay first, then a 500 for that share of
/// requests (the answer, when it fails).
async fn inject_fault(f: &FaultArgs) -> Option<Response> {
    if f.fault_delay_ms > 0 {
        tokio::time::sleep(f.delay()).await;
    }
    (f.fault_error_rate > 0.0 && fastrand::f64() < f.fault_error_rate).then(|| {
        json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected fault (FAULT_ERROR_RATE)",
        )
    })
}

/// Everything a request passes before its route, in one layer (each layer
/// of its own cost a tenth of a small answer: README, "Benchmarks"): opens
/// the server span (a child of the caller's trace context), reads the body
/// within its bounds ([`bounded_body`]), gives the route REQUEST_TIMEOUT_MS
/// (503 past it), stamps the chain header, records metrics and writes one
/// access-log line.
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
    let handle = async {
        let req = match read_body(o.body, req).await {
            Ok(req) => req,
            Err(refused) => return refused,
        };
        let standard = matches!(
            route_label,
            "/healthz" | "/readyz" | "/version" | "/metrics"
        );
        let run = async {
            if standard {
                return next.run(req).await;
            }
            if let Some(f) = &o.fault
                && let Some(failed) = inject_fault(f).await
            {
                return failed;
            }
            let _turn = o.in_flight.acquire().await.ok();
            next.run(req).await
        };
        match tokio::time::timeout(o.timeout, run).await {
            Ok(res) => res,
            Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        }
    };
    let mut res = handle.with_context(cx.clone()).await;
    chain::stamp(&o.chain, &mut res);
    // No answer is to be read as another type than it says (a JSON error as
    // HTML, say).
    res.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
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
    } else {
        // The line leads to its trace when the request belongs to one.
        let ids = telemetry::log::ids(span.span_context());
        telemetry::log::access(method.as_str(), route_label, status, latency_ms, ids);
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
