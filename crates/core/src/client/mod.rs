//! The outbound HTTP client. Every call has a connect and a total timeout, opens
//! a client span, injects the trace context (W3C and B3, baggage) with the
//! OpenTelemetry propagators, and copies by hand what no library does: the
//! request id and the browser's `user-agent`, which the header-based release
//! stage matches at forecast (README, "Headers each service forwards").

use std::time::Duration;

use axum::{
    body::Bytes,
    extract::FromRequestParts,
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, request::Parts},
};

use opentelemetry::{
    KeyValue,
    propagation::TextMapPropagator,
    trace::{SpanKind, Status, TraceContextExt, Tracer},
};

use crate::telemetry::{Telemetry, propagator};

pub mod http1;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Inbound headers copied by hand onto every outbound call; the trace context
/// and baggage are written by the propagators.
pub const FORWARDED_HEADERS: [HeaderName; 2] = [REQUEST_ID, axum::http::header::USER_AGENT];

/// The headers of the inbound request that its outbound calls carry on. A request
/// that arrives without `x-request-id` (no gateway in front) is given one here.
#[derive(Clone, Debug, Default)]
pub struct Forwarded(HeaderMap);

impl Forwarded {
    pub fn from_headers(inbound: &HeaderMap) -> Self {
        let mut out = HeaderMap::new();
        for name in FORWARDED_HEADERS.iter() {
            for value in inbound.get_all(name) {
                out.append(name.clone(), value.clone());
            }
        }
        if !out.contains_key(REQUEST_ID) {
            // A version-4 UUID, as Envoy makes them: from a fast generator
            // (an id to follow, not a secret) and written without the
            // formatter.
            let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
            let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
            if let Ok(v) =
                HeaderValue::from_bytes(id.hyphenated().encode_lower(&mut text).as_bytes())
            {
                out.insert(REQUEST_ID, v);
            }
        }
        Forwarded(out)
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Forwarded {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Forwarded::from_headers(&parts.headers))
    }
}

/// Reads a downstream's JSON answer. The bytes are checked to be UTF-8 once,
/// as a whole: read as bytes, serde_json checks every string and key again,
/// a twentieth of a page's cost (README, "Benchmarks").
pub fn json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(e) => Err(serde::de::Error::custom(format!(
            "the answer is not UTF-8: {e}"
        ))),
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
    #[error("request failed: {0}")]
    Other(String),
}

/// A pooled HTTP client, built once per service and shared by every request.
/// The calls are plain HTTP/1.1 GETs between services, so nothing of a
/// browser-grade client (redirects, cookies, proxies) is wanted on their path:
/// [`http1`] writes the request and reads the answer on a kept-alive connection.
#[derive(Clone, Debug)]
pub struct Client {
    pool: std::sync::Arc<http1::Pool>,
    timeout: Duration,
    telemetry: Telemetry,
}

/// The largest answer a downstream may send (past it the call fails): the
/// services' answers are a few KiB.
pub const MAX_ANSWER: usize = 4 * 1024 * 1024;

impl Client {
    pub fn new(connect_timeout: Duration, timeout: Duration, telemetry: Telemetry) -> Self {
        // Services talk to each other directly (through the sidecar in a
        // mesh): no HTTP_PROXY is read, so a developer's cannot capture them.
        Client {
            pool: std::sync::Arc::new(http1::Pool::new(
                connect_timeout,
                crate::server::listen::POOL_IDLE,
            )),
            timeout,
            telemetry,
        }
    }

    /// GET `url`, forwarding `fwd` and the current trace context, and read the
    /// whole body. The call is a client span, child of the request being served.
    pub async fn get(&self, url: &str, fwd: &Forwarded) -> Result<Upstream, ClientError> {
        let parent = opentelemetry::Context::current();
        let exporting = self.telemetry.is_exporting();
        let uri = url.parse::<Uri>();
        // Without an exporter no span is built: the caller's context is injected
        // as it came, so the sidecars' spans still join up.
        let cx = if exporting {
            parent.with_span(self.client_span(url, uri.as_ref().ok(), &parent))
        } else {
            parent
        };
        // Where the GET goes: an http:// URL's authority, host and path.
        let target = uri
            .as_ref()
            .ok()
            .filter(|u| u.scheme() == Some(&axum::http::uri::Scheme::HTTP))
            .and_then(|u| {
                let path = u.path_and_query().map_or("/", |p| p.as_str());
                Some((u.authority()?, u.host()?, path))
            });
        let result = match target {
            Some((authority, host, path)) => {
                let mut head = RequestHead::get(path, authority.as_str());
                for (name, value) in fwd.headers() {
                    head.header(name.as_str(), value.as_bytes());
                }
                propagator().inject_context(&cx, &mut head);
                let request = head.finish();
                let port = authority.port_u16().unwrap_or(80);
                tokio::time::timeout(
                    self.timeout,
                    self.pool.get(authority.as_str(), host, port, &request),
                )
                .await
                .unwrap_or(Err(ClientError::Timeout(self.timeout)))
            }
            None => Err(ClientError::Other(format!("not an http:// URL: {url}"))),
        };
        if exporting {
            let span = cx.span();
            match &result {
                Ok(up) => {
                    span.set_attribute(KeyValue::new(
                        "http.response.status_code",
                        i64::from(up.status.as_u16()),
                    ));
                    if up.status.is_server_error() {
                        span.set_status(Status::error(format!("HTTP {}", up.status.as_u16())));
                    }
                }
                Err(e) => span.set_status(Status::error(e.to_string())),
            }
            span.end();
        }
        result
    }

    fn client_span(
        &self,
        url: &str,
        uri: Option<&Uri>,
        parent: &opentelemetry::Context,
    ) -> opentelemetry::global::BoxedSpan {
        let tracer = self.telemetry.tracer();
        let mut attributes = vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.full", url.to_owned()),
        ];
        if let Some(u) = uri {
            if let Some(h) = u.host() {
                attributes.push(KeyValue::new("server.address", h.to_owned()));
            }
            if let Some(p) = u.port_u16() {
                attributes.push(KeyValue::new("server.port", i64::from(p)));
            }
        }
        tracer
            .span_builder("GET")
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(tracer, parent)
    }
}

/// A GET's head as it goes on the wire. The propagators write their headers
/// straight into it; a header that could break the head (CR, LF or NUL in
/// it, a name that is not a token) is left out, as `HeaderValue` refuses it.
struct RequestHead(Vec<u8>);

impl RequestHead {
    fn get(path: &str, authority: &str) -> Self {
        let mut v = Vec::with_capacity(512);
        v.extend_from_slice(b"GET ");
        v.extend_from_slice(path.as_bytes());
        v.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        v.extend_from_slice(authority.as_bytes());
        v.extend_from_slice(b"\r\n");
        RequestHead(v)
    }

    fn header(&mut self, name: &str, value: &[u8]) {
        let name_ok = !name.is_empty() && name.bytes().all(is_token);
        let value_ok = value
            .iter()
            .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f));
        if name_ok && value_ok {
            self.0.extend_from_slice(name.as_bytes());
            self.0.extend_from_slice(b": ");
            self.0.extend_from_slice(value);
            self.0.extend_from_slice(b"\r\n");
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(b"\r\n");
        self.0
    }
}

impl opentelemetry::propagation::Injector for RequestHead {
    fn set(&mut self, key: &str, value: String) {
        self.header(key, value.as_bytes());
    }
}

/// A byte of an HTTP token (RFC 9110, 5.6.2).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A client's top-level message hides the cause ("client error (Connect)"); the
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
        // The trace context is the propagators' job, from the span in force.
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
