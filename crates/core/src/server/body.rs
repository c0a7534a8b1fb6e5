//! What a request body may take. Every service bounds bodies with
//! tower-http's layers (its size, and its pauses: [`layer`]); a route that
//! takes less adds its own limit. A handler that reads a body with axum's
//! extractors (`Form`, `Bytes`) answers what they refuse with [`refusal`].

use std::time::Duration;

use axum::{http::StatusCode, response::Response};
use tower_http::{limit::RequestBodyLimitLayer, timeout::RequestBodyTimeoutLayer};

use crate::error::json_error;

/// The largest request body a service takes on any route.
pub const MAX_BODY: usize = 64 * 1024;

/// Bodies over `limit` bytes are refused (413, at once when the declared
/// length says so), and a body that pauses longer than `pause` breaks off
/// (408 from [`refusal`]).
pub fn layer(limit: usize, pause: Duration) -> (RequestBodyLimitLayer, RequestBodyTimeoutLayer) {
    (
        RequestBodyLimitLayer::new(limit),
        RequestBodyTimeoutLayer::new(pause),
    )
}

/// The status for a body an extractor could not read: 413 past the limit,
/// 408 when it paused too long, else what the extractor says (400 when it
/// broke off, 415 for a type the route does not take).
pub fn status(rejection: &(dyn std::error::Error + 'static), said: StatusCode) -> StatusCode {
    let mut cause = Some(rejection);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return StatusCode::PAYLOAD_TOO_LARGE;
        }
        if e.is::<tower_http::timeout::TimeoutError>() {
            return StatusCode::REQUEST_TIMEOUT;
        }
        cause = e.source();
    }
    said
}

/// [`status`] as a JSON error answer that says what was wrong.
pub fn refusal(rejection: &(dyn std::error::Error + 'static), said: StatusCode) -> Response {
    let status = status(rejection, said);
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_owned(),
        StatusCode::REQUEST_TIMEOUT => {
            "the request body paused for too long (BODY_TIMEOUT_MS)".to_owned()
        }
        _ => rejection.to_string(),
    };
    json_error(status, &message)
}
