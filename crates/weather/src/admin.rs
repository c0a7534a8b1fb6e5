//! The admin listener of `weather up` (like Envoy's admin port): which stage is
//! in force, and applying another one without dropping requests.
//!
//!   GET  /stage          -> {"stage": "multiservice", "stages": [...]}
//!   POST /stage/NAME     -> applies istio/stages/NAME

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;

use crate::{dataplane::Plane, stages};

type Paths = Arc<RwLock<(Vec<PathBuf>, Option<String>)>>;

#[derive(Clone)]
struct Admin {
    plane: Arc<Plane>,
    paths: Paths,
}

pub fn router(plane: Arc<Plane>, paths: Paths) -> Router {
    Router::new()
        .route("/stage", get(current))
        .route("/stage/{name}", post(switch))
        .with_state(Admin { plane, paths })
}

async fn current(State(a): State<Admin>) -> Json<serde_json::Value> {
    let (paths, stage) = a.paths.read().unwrap_or_else(|e| e.into_inner()).clone();
    let root = stage.as_deref().and_then(|s| stages::root_of(&paths, s));
    Json(json!({
        "stage": stage,
        "stages": root.map(|r| stages::names(&r)).unwrap_or_default(),
        "paths": paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    }))
}

async fn switch(State(a): State<Admin>, Path(name): Path<String>) -> Response {
    let (paths, stage) = a.paths.read().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(root) = stage.as_deref().and_then(|s| stages::root_of(&paths, s)) else {
        let msg = "weather up was started with -f paths, not --stage: switch by editing the files (they are watched)";
        return (StatusCode::CONFLICT, Json(json!({"error": msg}))).into_response();
    };
    let new_paths = match stages::paths(&root, &name) {
        Ok(p) => p,
        Err(e) => return (StatusCode::NOT_FOUND, Json(json!({"error": e}))).into_response(),
    };
    match a.plane.apply(&new_paths, Some(name.clone())) {
        Ok(summary) => {
            *a.paths.write().unwrap_or_else(|e| e.into_inner()) = (new_paths, Some(name.clone()));
            tracing::info!("{summary}: {}", stages::summary(&root, &name));
            Json(json!({"stage": name, "applied": summary})).into_response()
        }
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": e}))).into_response(),
    }
}
