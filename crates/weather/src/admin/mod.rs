//! The admin listener of `weather up` (like Envoy's admin port): which stage is
//! in force, applying another one without dropping requests, Istio's metrics,
//! and a live page of the release. `weather up` mounts it on the data plane's
//! [`Plane`]; the data plane does not know it.
//!
//!   GET  /                  -> the live page (graph, stage, version matrix)
//!   GET  /panel             -> the page's panel alone, which the page refreshes
//!   GET  /stats/prometheus  -> Istio's standard metrics, Prometheus text format
//!   GET  /stage             -> {"stage": "multiservice", "stages": [...], ...}
//!   POST /stage/NAME        -> applies istio/stages/NAME (same origin only)
//!   POST /apply?label=L     -> applies the routing objects of the YAML body over
//!                              the manifests in force, whole or not at all
//!                              (same origin only; `weather release` uses it)
//!
//! Every route answers only requests addressed to localhost or an address of
//! this machine, and bounds bodies in size and time ([`guard`]).

mod guard;
mod page;

use std::{net::SocketAddr, sync::Arc};

use askama::Template;
use axum::{
    Json, Router,
    extract::{Path, Query, State, rejection::StringRejection},
    http::{HeaderMap, StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;
use weather_core::{
    origin::cross_origin,
    server::{self, RunningServer},
};

use crate::{dataplane::Plane, stages};

/// The admin routes for the listener bound to `bound`, behind its guard.
fn router(plane: Arc<Plane>, bound: SocketAddr) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/panel", get(panel))
        .route("/stats/prometheus", get(prometheus))
        .route("/stage", get(current))
        .route("/stage/{name}", post(switch))
        .route("/apply", post(apply))
        .fallback(no_such_route)
        .method_not_allowed_fallback(no_such_method)
        .with_state(plane)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            guard::REQUEST_TIMEOUT,
        ))
        .layer(server::body::layer(guard::MAX_BODY, guard::BODY_PAUSE))
        .layer(middleware::from_fn_with_state(bound, guard::host_guard))
}

const ROUTES: &str = "GET /, GET /stage, GET /stats/prometheus, POST /stage/NAME, POST /apply";

async fn no_such_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let msg = format!(
        "no such route: {method} {}; the admin listener serves {ROUTES}",
        uri.path()
    );
    (StatusCode::NOT_FOUND, Json(json!({"error": msg}))).into_response()
}

async fn no_such_method(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let msg = format!(
        "{method} is not served on {}; the admin listener serves {ROUTES}",
        uri.path()
    );
    (StatusCode::METHOD_NOT_ALLOWED, Json(json!({"error": msg}))).into_response()
}

async fn home(State(plane): State<Arc<Plane>>) -> Response {
    let panel = page::Panel::new(
        &plane.applied(),
        &plane.stats,
        plane.settings.trace_viewer.as_deref(),
    );
    match panel.render() {
        Ok(panel) => html(page::Page { panel }.render()),
        Err(e) => html(Err(e)),
    }
}

async fn panel(State(plane): State<Arc<Plane>>) -> Response {
    html(
        page::Panel::new(
            &plane.applied(),
            &plane.stats,
            plane.settings.trace_viewer.as_deref(),
        )
        .render(),
    )
}

fn html(rendered: askama::Result<String>) -> Response {
    match rendered {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!("admin page: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be drawn\n",
            )
                .into_response()
        }
    }
}

async fn prometheus(State(plane): State<Arc<Plane>>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::dataplane::stats::CONTENT_TYPE)],
        plane.stats.render(),
    )
        .into_response()
}

/// Why a write is refused, if it is: sent by another origin's page (403), or
/// with a content type an HTML form can send (415), which no tool of the
/// project uses and a page of another site could, even where a browser sends
/// no Origin.
fn refuse_write(headers: &HeaderMap) -> Option<Response> {
    if cross_origin(headers) {
        let msg = "a write from another origin is refused: use weather stage, weather release, curl, or this listener's own page";
        return Some((StatusCode::FORBIDDEN, Json(json!({"error": msg}))).into_response());
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|t| {
            matches!(
                t.as_str(),
                "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
            )
        });
    if form {
        let msg = "a write with a form's content type is refused: send no body, or YAML as application/yaml";
        return Some(
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Json(json!({"error": msg})),
            )
                .into_response(),
        );
    }
    None
}

/// Binds `addr` and serves the admin routes on it: the one way to have them.
pub async fn serve(addr: SocketAddr, plane: Arc<Plane>) -> std::io::Result<RunningServer> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    server::spawn(listener, router(plane, bound))
}

async fn current(State(plane): State<Arc<Plane>>) -> Json<serde_json::Value> {
    let applied = plane.applied();
    let root = applied
        .stage
        .as_deref()
        .and_then(|s| stages::root_of(&applied.paths, s));
    let reloads = plane.reloads();
    let api = stages::Api::of(&applied.paths);
    Json(json!({
        "stage": applied.stage,
        "api": api.name(),
        "stages": root.map(|r| stages::names_for(&r, api)).unwrap_or_default(),
        "paths": applied.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "overlay": applied.overlay.as_ref().map(|o| json!({
            "label": o.label,
            "objects": o.objects,
        })),
        "reloads": {
            "applied": reloads.applied,
            "refused": reloads.refused,
            "last_error": reloads.last_error,
        },
    }))
}

#[derive(serde::Deserialize)]
struct ApplyQuery {
    #[serde(default)]
    label: String,
}

async fn apply(
    State(plane): State<Arc<Plane>>,
    Query(q): Query<ApplyQuery>,
    headers: HeaderMap,
    body: Result<String, StringRejection>,
) -> Response {
    if let Some(refused) = refuse_write(&headers) {
        return refused;
    }
    let body = match body {
        Ok(body) => body,
        Err(e) => return server::body::refusal(&e, e.status()),
    };
    let label = if q.label.is_empty() {
        "applied through the admin listener".to_owned()
    } else {
        q.label
    };
    match plane.apply(body, label.clone()) {
        Ok(summary) => {
            tracing::info!("{summary} ({label})");
            Json(json!({"applied": summary})).into_response()
        }
        Err(e) => {
            let body = Json(json!({"error": e.to_string()}));
            (StatusCode::UNPROCESSABLE_ENTITY, body).into_response()
        }
    }
}

async fn switch(
    State(plane): State<Arc<Plane>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refuse_write(&headers) {
        return refused;
    }
    let applied = plane.applied();
    let Some(root) = applied
        .stage
        .as_deref()
        .and_then(|s| stages::root_of(&applied.paths, s))
    else {
        let msg = "weather up was started with -f paths, not --stage: switch by editing the files (they are watched)";
        return (StatusCode::CONFLICT, Json(json!({"error": msg}))).into_response();
    };
    // A switch stays in the API the running stage is written in.
    let api = stages::Api::of(&applied.paths);
    let paths = match stages::paths_for(&root, api, &name) {
        Ok(p) => p,
        Err(e) => {
            let body = Json(json!({"error": e.to_string()}));
            return (StatusCode::NOT_FOUND, body).into_response();
        }
    };
    match plane.switch(paths, Some(name.clone())) {
        Ok(summary) => {
            tracing::info!("{summary}: {}", stages::summary_for(&root, api, &name));
            Json(json!({"stage": name, "applied": summary})).into_response()
        }
        Err(e) => {
            let body = Json(json!({"error": e.to_string()}));
            (StatusCode::UNPROCESSABLE_ENTITY, body).into_response()
        }
    }
}
