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
use hyper_util::{
    client::legacy::{Client as HyperClient, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};

use opentelemetry::{
    KeyValue,
    propagation::TextMapPropagator,
    trace::{SpanKind, Status, TraceContextExt, Tracer},
};

use crate::{
    chain::CHAIN_HEADER,
    telemetry::{HeaderInjector, Telemetry, propagator},
};

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
/// hyper's own pooled client: the calls are plain HTTP/1.1 GETs between
/// services, so nothing of a browser-grade client (URL parsing, redirects,
/// cookies, proxies) is wanted on their path.
#[derive(Clone, Debug)]
pub struct Client {
    http: HyperClient<HttpConnector, http_body_util::Empty<Bytes>>,
    timeout: Duration,
    telemetry: Telemetry,
}

/// The largest answer a downstream may send (past it the call fails): the
/// services' answers are a few KiB.
pub const MAX_ANSWER: usize = 4 * 1024 * 1024;

impl Client {
    pub fn new(connect_timeout: Duration, timeout: Duration, telemetry: Telemetry) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        // Services talk to each other directly (through the sidecar in a
        // mesh): no HTTP_PROXY is read, so a developer's cannot capture them.
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(crate::server::listen::POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Client {
            http,
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
        let result = match uri {
            Ok(uri) if uri.scheme() == Some(&axum::http::uri::Scheme::HTTP) => {
                let mut req = axum::http::Request::new(http_body_util::Empty::new());
                *req.uri_mut() = uri;
                let headers = req.headers_mut();
                headers.clone_from(fwd.headers());
                propagator().inject_context(&cx, &mut HeaderInjector(headers));
                tokio::time::timeout(self.timeout, self.send(req))
                    .await
                    .unwrap_or(Err(ClientError::Timeout(self.timeout)))
            }
            _ => Err(ClientError::Other(format!("not an http:// URL: {url}"))),
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

    async fn send(
        &self,
        req: axum::http::Request<http_body_util::Empty<Bytes>>,
    ) -> Result<Upstream, ClientError> {
        use http_body_util::BodyExt;
        let res = self.http.request(req).await.map_err(|e| {
            if e.is_connect() {
                ClientError::Connect(root_cause(&e))
            } else {
                ClientError::Other(root_cause(&e))
            }
        })?;
        let status = res.status();
        let chain = res.headers().get(CHAIN_HEADER).cloned();
        let body = http_body_util::Limited::new(res.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    ClientError::Other(format!("the answer is over {MAX_ANSWER} bytes"))
                } else {
                    ClientError::Other(root_cause(&*e))
                }
            })?
            .to_bytes();
        Ok(Upstream {
            status,
            chain,
            body,
        })
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
