//! What every service serves (`/healthz`, `/readyz`, `/version`, `/metrics`;
//! docs/architecture.md, "Contracts") and the layers every request passes, one
//! concern each, in the order a request meets them:
//!
//! 1. the server span and access log (tower-http `TraceLayer`, [`super::trace`]);
//! 2. the request metrics ([`crate::metrics`]);
//! 3. `x-content-type-options: nosniff` (tower-http `SetResponseHeaderLayer`);
//! 4. the `x-weather-chain` header ([`crate::chain`]);
//! 5. the body's bounds, 413 and 408 ([`super::body`]);
//! 6. the request timeout, 503 past `REQUEST_TIMEOUT_MS` (tower-http `TimeoutLayer`);
//!
//! and, on the app's own routes only (the probes never wait behind them):
//!
//! 7. the failure switches ([`super::fault`]), before a request takes its turn;
//! 8. the in-flight bound (tower's `GlobalConcurrencyLimitLayer`): at most
//!    [`MAX_IN_FLIGHT`] of the app's requests are handled, and so have their
//!    body read, at once; the rest wait their turn holding nothing but their
//!    connection.

use std::time::Instant;

use axum::{
    Json, Router,
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::Response,
    routing::get,
};
use tower::{ServiceBuilder, limit::GlobalConcurrencyLimitLayer};
use tower_http::{set_header::SetResponseHeaderLayer, timeout::TimeoutLayer, trace::TraceLayer};

use super::{
    body,
    fault::FaultLayer,
    lifecycle::{AppInfo, Health},
    trace::{AccessLog, ServerSpan},
};
use crate::{
    chain,
    config::AppArgs,
    error::json_error,
    metrics::{Metrics, Route},
    telemetry::Telemetry,
};

/// How many of an app's requests are handled at once; past it a request
/// waits, holding only its connection. Each one in flight holds its page or
/// answer and, for a service that calls another, a pooled connection: the
/// bound keeps a service at 200 connections within its memory budget, and
/// two cores stay busy with fewer (docs/benchmarks.md).
pub const MAX_IN_FLIGHT: usize = 32;

pub use super::body::MAX_BODY;

/// Adds `/healthz`, `/readyz`, `/version` and `/metrics` to a service's routes
/// and the layers every request passes (the routes' own fallback included).
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
    let routes = routes.layer(
        ServiceBuilder::new()
            .option_layer(FaultLayer::new(&args.fault))
            .layer(GlobalConcurrencyLimitLayer::new(MAX_IN_FLIGHT)),
    );
    standard(info, health, metrics.clone()).merge(routes).layer(
        ServiceBuilder::new()
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(ServerSpan { telemetry })
                    .on_request(())
                    .on_response(AccessLog)
                    .on_failure(()),
            )
            .layer(middleware::from_fn_with_state(metrics, record))
            .layer(SetResponseHeaderLayer::overriding(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            .layer(middleware::map_response_with_state(
                chain::link(info.app, info.version),
                stamp_chain,
            ))
            .layer(body::layer(MAX_BODY, args.body_timeout()))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                args.request_timeout(),
            )),
    )
}

/// The probes, the version and the metrics.
fn standard(info: AppInfo, health: Health, metrics: Metrics) -> Router {
    let version = serde_json::json!({ "app": info.app, "version": info.version });
    Router::new()
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
                    [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                    metrics.render(),
                )
            }),
        )
}

/// Records the request's route, status and time in the app's metrics.
async fn record(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = Route::of(req.extensions().get::<MatchedPath>().cloned());
    let res = next.run(req).await;
    metrics.record(method, route, res.status().as_u16(), start.elapsed());
    res
}

/// Sets `x-weather-chain`: this service, then what its downstream reported.
async fn stamp_chain<B>(
    State(me): State<HeaderValue>,
    mut res: axum::http::Response<B>,
) -> axum::http::Response<B> {
    chain::stamp(&me, &mut res);
    res
}

/// The JSON APIs' fallback: an unknown path is a 404 that says so.
pub async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "no such route")
}
