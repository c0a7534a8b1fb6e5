//! The admin listener of `weather up` (like Envoy's admin port): which stage is
//! in force, and applying another one without dropping requests. `weather up`
//! mounts it on the data plane's [`Plane`]; the data plane does not know it.
//!
//!   GET  /stage          -> {"stage": "multiservice", "stages": [...], ...}
//!   POST /stage/NAME     -> applies istio/stages/NAME

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;
use tokio::net::TcpListener;
use weather_core::server::{self, RunningServer};

use crate::{dataplane::Plane, stages};

pub fn router(plane: Arc<Plane>) -> Router {
    Router::new()
        .route("/stage", get(current))
        .route("/stage/{name}", post(switch))
        .with_state(plane)
}

/// Binds `addr` and serves the admin router on it.
pub async fn serve(addr: SocketAddr, plane: Arc<Plane>) -> std::io::Result<RunningServer> {
    server::spawn(TcpListener::bind(addr).await?, router(plane))
}

async fn current(State(plane): State<Arc<Plane>>) -> Json<serde_json::Value> {
    let applied = plane.applied();
    let root = applied
        .stage
        .as_deref()
        .and_then(|s| stages::root_of(&applied.paths, s));
    let reloads = plane.reloads();
    Json(json!({
        "stage": applied.stage,
        "stages": root.map(|r| stages::names(&r)).unwrap_or_default(),
        "paths": applied.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "reloads": {
            "applied": reloads.applied,
            "refused": reloads.refused,
            "last_error": reloads.last_error,
        },
    }))
}

async fn switch(State(plane): State<Arc<Plane>>, Path(name): Path<String>) -> Response {
    let applied = plane.applied();
    let Some(root) = applied
        .stage
        .as_deref()
        .and_then(|s| stages::root_of(&applied.paths, s))
    else {
        let msg = "weather up was started with -f paths, not --stage: switch by editing the files (they are watched)";
        return (StatusCode::CONFLICT, Json(json!({"error": msg}))).into_response();
    };
    let paths = match stages::paths(&root, &name) {
        Ok(p) => p,
        Err(e) => {
            let body = Json(json!({"error": e.to_string()}));
            return (StatusCode::NOT_FOUND, body).into_response();
        }
    };
    match plane.switch(paths, Some(name.clone())) {
        Ok(summary) => {
            tracing::info!("{summary}: {}", stages::summary(&root, &name));
            Json(json!({"stage": name, "applied": summary})).into_response()
        }
        Err(e) => {
            let body = Json(json!({"error": e.to_string()}));
            (StatusCode::UNPROCESSABLE_ENTITY, body).into_response()
        }
    }
}
