//! JSON answers. Like `axum::Json`, but written into one buffer sized for the
//! services' answers up front: axum's writer starts at 128 bytes and copies
//! every piece through `BytesMut`, which is a third of a forecast's cost
//! (README, "Benchmarks").

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// A value answered as `application/json`.
#[derive(Clone, Copy, Debug)]
pub struct Json<T>(pub T);

/// What most answers fit in without growing.
const INITIAL: usize = 2048;

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        let mut buf = Vec::with_capacity(INITIAL);
        match serde_json::to_writer(&mut buf, &self.0) {
            Ok(()) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                buf,
            )
                .into_response(),
            Err(e) => {
                // Only a type that cannot be JSON (a map with non-string
                // keys) gets here: a bug, said as one.
                tracing::error!("cannot write the answer as JSON: {e}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    r#"{"error":"the answer could not be written"}"#,
                )
                    .into_response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_the_value_as_application_json() {
        let res = Json(serde_json::json!({"a": [1, "é"]})).into_response();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(&body[..], r#"{"a":[1,"é"]}"#.as_bytes());
    }

    #[tokio::test]
    async fn a_value_that_cannot_be_json_is_a_500_that_says_so() {
        let map: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let res = Json(map).into_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        assert_eq!(&body[..], br#"{"error":"the answer could not be written"}"#);
    }
}
