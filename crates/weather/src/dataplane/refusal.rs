//! What a hop answers itself, instead of the upstream: the status, Envoy's
//! response flag and its plain-text detail, as Envoy writes them. Shared by
//! the checks of a client's request ([`super::downstream`]) and the hop
//! ([`super::proxy`]).

use axum::{
    body::Body,
    http::{HeaderValue, Response, StatusCode, header},
};

/// The response header in which a hop says what it flagged (Envoy's
/// `%RESPONSE_FLAGS%`), on its own answers and on those it passes on.
pub(super) const FLAGS_HEADER: &str = "x-weather-response-flags";

/// Why the hop answers itself instead of the upstream.
#[derive(Clone)]
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) flag: &'static str,
    pub(super) detail: String,
    /// A JWT refused: Envoy's `www-authenticate` challenge.
    challenge: Option<String>,
    /// A circuit breaker's overflow: Envoy's `x-envoy-overloaded: true`.
    overloaded: bool,
}

impl Refusal {
    pub(super) fn new(
        status: StatusCode,
        flag: &'static str,
        detail: impl Into<String>,
    ) -> Refusal {
        Refusal {
            status,
            flag,
            detail: detail.into(),
            challenge: None,
            overloaded: false,
        }
    }

    /// A circuit breaker's limit reached: 503 `UO`, as Envoy answers it.
    pub(super) fn overflow() -> Refusal {
        let mut r = Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UO",
            "upstream connect error or disconnect/reset before headers. reset reason: overflow",
        );
        r.overloaded = true;
        r
    }

    /// What the destination's proxy answers when it refuses the request (JWT
    /// 401, RBAC 403, plaintext under STRICT).
    pub(super) fn security(r: mesh::security::Refusal, realm: &str) -> Refusal {
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
        let mut out = Refusal::new(status, if r.status == 503 { "UC" } else { "-" }, r.body);
        if r.status == 401 {
            out.challenge = Some(format!("Bearer realm=\"{realm}\", error=\"invalid_token\""));
        }
        out
    }

    /// The plain-text answer Envoy gives.
    pub(super) fn into_response(self) -> Response<Body> {
        let mut res = Response::new(Body::from(format!("{}\n", self.detail)));
        *res.status_mut() = self.status;
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        res.headers_mut()
            .insert(FLAGS_HEADER, HeaderValue::from_static(self.flag));
        if self.overloaded {
            res.headers_mut()
                .insert("x-envoy-overloaded", HeaderValue::from_static("true"));
        }
        if let Some(c) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        res
    }
}
