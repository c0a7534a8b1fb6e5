//! The one error type of the JSON APIs: a variant per status, each answered as
//! `{"error": "..."}`. Internal causes are logged by the caller, never shown.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// The JSON body every error response of the APIs carries.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(ErrorBody { error: message })).into_response()
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        json_error(self.status(), &self.to_string())
    }
}
