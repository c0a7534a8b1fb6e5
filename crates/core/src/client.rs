//! The outbound HTTP client: `reqwest`, one per service, with pooled
//! keep-alive connections (kept for less than the server's idle timeout), a
//! connect and a total timeout, no redirects and no proxy, and answers read
//! through a size limit. Every call opens a client span, injects the trace
//! context (W3C and B3, baggage) with the OpenTelemetry propagators, and
//! copies by hand what no library does: the request id and the browser's
//! `user-agent`, which the header-based release stage matches at forecast
//! (docs/architecture.md, "Headers each service forwards").

use std::time::Duration;

use axum::{
    body::Bytes,
    extract::FromRequestParts,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, request::Parts},
};
use opentelemetry::propagation::TextMapPropagator;
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    chain::CHAIN_HEADER,
    server::listen::POOL_IDLE,
    telemetry::{HeaderExtractor, HeaderInjector, Telemetry, propagator},
};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Inbound headers copied by hand onto every outbound call; the trace context
/// and baggage are written by the propagators.
pub const FORWARDED_HEADERS: [HeaderName; 2] = [REQUEST_ID, axum::http::header::USER_AGENT];

/// What the inbound request passes on to its outbound calls: the headers
/// copied by hand, and the caller's trace context (with its baggage), which
/// an app that exports no spans passes on unchanged. A request that arrives
/// without `x-request-id` (no gateway in front) is given one here.
#[derive(Clone, Debug, Default)]
pub struct Forwarded {
    headers: HeaderMap,
    parent: opentelemetry::Context,
}

impl Forwarded {
    pub fn from_headers(inbound: &HeaderMap) -> Self {
        let mut headers = HeaderMap::new();
        for name in FORWARDED_HEADERS.iter() {
            for value in inbound.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        if !headers.contains_key(REQUEST_ID) {
            // A version-4 UUID, as Envoy makes them.
            let id = uuid::Uuid::new_v4().hyphenated().to_string();
            if let Ok(v) = HeaderValue::from_str(&id) {
                headers.insert(REQUEST_ID, v);
            }
        }
        Forwarded {
            headers,
            parent: propagator().extract(&HeaderExtractor(inbound)),
        }
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Forwarded {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Forwarded::from_headers(&parts.headers))
    }
}

/// What a downstream answered.
#[derive(Debug)]
pub struct Upstream {
    pub status: StatusCode,
    /// The downstream's `x-weather-chain`, to be echoed after our own entry.
    pub chain: Option<HeaderValue>,
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("answered more than {MAX_ANSWER} bytes")]
    TooLarge,
    #[error("request failed: {0}")]
    Other(String),
}

/// The largest answer a downstream may send (past it the call fails): the
/// services' answers are a few KiB.
pub const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// At most this many idle connections are kept per upstream.
pub const MAX_IDLE: usize = 64;

/// A service's client, built once and shared by every request.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    timeout: Duration,
    telemetry: Telemetry,
}

impl Client {
    pub fn new(connect_timeout: Duration, timeout: Duration, telemetry: Telemetry) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(MAX_IDLE)
            .redirect(reqwest::redirect::Policy::none())
            // Services talk to each other directly (through the sidecar in a
            // mesh): no HTTP_PROXY is read, so a developer's cannot capture them.
            .no_proxy()
            .build()
            // Without TLS nothing in the builder can fail.
            .expect("a plain HTTP client builds");
        Client {
            http,
            timeout,
            telemetry,
        }
    }

    /// GET `url`, forwarding `fwd` and the trace context, and read the whole
    /// body. The call is a client span, child of the request being served.
    pub async fn get(&self, url: &str, fwd: &Forwarded) -> Result<Upstream, ClientError> {
        let mut headers = fwd.headers.clone();
        let span = if self.telemetry.is_exporting() {
            let span = tracing::info_span!(
                "call",
                otel.name = "GET",
                otel.kind = "client",
                otel.status_code = Empty,
                url.full = url,
            );
            span.set_attribute("http.request.method", "GET");
            if let Some(sink) = self.telemetry.sink() {
                span.set_attribute(sink.key, sink.value);
            }
            propagator().inject_context(&span.context(), &mut HeaderInjector(&mut headers));
            span
        } else {
            // No span of ours: the caller's context goes on as it came.
            propagator().inject_context(&fwd.parent, &mut HeaderInjector(&mut headers));
            tracing::Span::none()
        };
        let result = self.call(url, headers).instrument(span.clone()).await;
        match &result {
            Ok(up) => {
                span.set_attribute("http.response.status_code", i64::from(up.status.as_u16()));
                if up.status.is_server_error() {
                    span.record("otel.status_code", "ERROR");
                }
            }
            Err(_) => {
                span.record("otel.status_code", "ERROR");
            }
        }
        result
    }

    async fn call(&self, url: &str, headers: HeaderMap) -> Result<Upstream, ClientError> {
        // reqwest reads the URL; only plain HTTP is spoken between services.
        if !url.starts_with("http://") {
            return Err(ClientError::Other(format!("not an http:// URL: {url}")));
        }
        let res = self
            .http
            .get(url)
            .headers(headers)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        let status = res.status();
        let chain = res.headers().get(CHAIN_HEADER).cloned();
        let body = self.read(res).await?;
        Ok(Upstream {
            status,
            chain,
            body,
        })
    }

    /// An answer's body, up to [`MAX_ANSWER`] bytes: refused at once when
    /// its length says more, and as soon as it grows past it otherwise.
    async fn read(&self, mut res: reqwest::Response) -> Result<Bytes, ClientError> {
        let declared = res.content_length();
        if declared.is_some_and(|n| n > MAX_ANSWER as u64) {
            return Err(ClientError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| self.error(e))? {
            if body.is_empty() && declared == Some(chunk.len() as u64) {
                // The whole answer in one piece: no copy.
                return Ok(chunk);
            }
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(ClientError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    }

    fn error(&self, e: reqwest::Error) -> ClientError {
        if e.is_connect() {
            ClientError::Connect(root_cause(&e))
        } else if e.is_timeout() {
            ClientError::Timeout(self.timeout)
        } else {
            ClientError::Other(root_cause(&e))
        }
    }
}

/// A client's top-level message hides the cause ("error sending request"); the
/// innermost source says what actually happened ("Connection refused").
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        msg = s.to_string();
        cur = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_the_request_id_and_user_agent_and_nothing_else() {
        let mut inbound = HeaderMap::new();
        inbound.insert("x-request-id", HeaderValue::from_static("abc"));
        inbound.insert("traceparent", HeaderValue::from_static("00-1-2-01"));
        inbound.insert(
            "user-agent",
            HeaderValue::from_static("Mozilla/5.0 Chrome/120.0"),
        );
        inbound.insert("cookie", HeaderValue::from_static("user=tester"));
        inbound.insert("authorization", HeaderValue::from_static("secret"));
        let f = Forwarded::from_headers(&inbound);
        assert_eq!(f.headers()["x-request-id"], "abc");
        // The trace context is the propagators' job.
        assert!(f.headers().get("traceparent").is_none());
        assert_eq!(f.headers()["user-agent"], "Mozilla/5.0 Chrome/120.0");
        assert!(f.headers().get("cookie").is_none());
        assert!(f.headers().get("authorization").is_none());
    }

    #[test]
    fn a_request_id_is_generated_when_absent() {
        let a = Forwarded::from_headers(&HeaderMap::new());
        let b = Forwarded::from_headers(&HeaderMap::new());
        let id = a.headers()[REQUEST_ID].to_str().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(
            uuid::Uuid::parse_str(id).unwrap().get_version(),
            Some(uuid::Version::Random)
        );
        assert_ne!(a.headers()[REQUEST_ID], b.headers()[REQUEST_ID]);
    }
}
