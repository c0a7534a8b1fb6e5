//! The request span and the access log, as tower-http's `TraceLayer` makes
//! and closes them: a span named by the matched route, child of the caller's
//! trace context, and one log line per answer written inside it. The probes
//! (`/healthz`, `/readyz`, `/metrics`) get a debug-level span and line, so a
//! kubelet's polling neither fills the log nor the traces.

use std::time::Duration;

use axum::{
    extract::MatchedPath,
    http::{Request, Response, header},
};
use opentelemetry::propagation::TextMapPropagator;
use tower_http::trace::{MakeSpan, OnResponse};
use tracing::{Level, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::telemetry::{HeaderExtractor, Telemetry, context_ids, propagator};

/// The routes polled by machines, not asked by users.
pub fn is_probe(route: &str) -> bool {
    matches!(route, "/healthz" | "/readyz" | "/metrics")
}

/// Makes each request's server span.
#[derive(Clone, Debug)]
pub struct ServerSpan {
    pub telemetry: Telemetry,
}

impl<B> MakeSpan<B> for ServerSpan {
    fn make_span(&mut self, req: &Request<B>) -> Span {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", |m| m.as_str());
        let method = req.method();
        // The fields are evaluated only when some layer wants the span.
        // The span's level must be known where it is written: one callsite
        // per level, the same fields.
        macro_rules! request_span {
            ($level:expr) => {
                tracing::span!(
                    $level,
                    "request",
                    otel.name = %format_args!("{method} {route}"),
                    otel.kind = "server",
                    otel.status_code = Empty,
                    trace_id = Empty,
                    span_id = Empty,
                )
            };
        }
        let span = if is_probe(route) {
            request_span!(Level::DEBUG)
        } else {
            request_span!(Level::INFO)
        };
        if span.is_disabled() {
            // Neither logged nor exported: nothing to link.
            return span;
        }
        let parent = propagator().extract(&HeaderExtractor(req.headers()));
        let ids = if self.telemetry.is_exporting() {
            let _ = span.set_parent(parent);
            attributes(&span, req, route, &self.telemetry);
            context_ids(&span.context())
        } else {
            // No span of ours: lines lead to the caller's.
            context_ids(&parent)
        };
        if let Some((trace, id)) = ids {
            span.record("trace_id", tracing::field::display(trace));
            span.record("span_id", tracing::field::display(id));
        }
        span
    }
}

/// The standard HTTP attributes of a server span (not log fields).
fn attributes<B>(span: &Span, req: &Request<B>, route: &str, telemetry: &Telemetry) {
    span.set_attribute("http.request.method", req.method().to_string());
    span.set_attribute("url.path", req.uri().path().to_owned());
    span.set_attribute("url.scheme", "http");
    span.set_attribute("http.route", route.to_owned());
    if let Some(q) = req.uri().query() {
        span.set_attribute("url.query", q.to_owned());
    }
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(ua) = header(header::USER_AGENT) {
        span.set_attribute("user_agent.original", ua.to_owned());
    }
    if let Some(id) = header(crate::client::REQUEST_ID) {
        // As Envoy tags its spans.
        span.set_attribute("guid:x-request-id", id.to_owned());
    }
    if let Some(sink) = telemetry.sink() {
        span.set_attribute(sink.key, sink.value);
    }
}

/// Writes a request's access-log line and its status on the span.
#[derive(Clone, Copy, Debug)]
pub struct AccessLog;

impl<B> OnResponse<B> for AccessLog {
    fn on_response(self, res: &Response<B>, latency: Duration, span: &Span) {
        let status = res.status().as_u16();
        // Microsecond precision, as a number.
        let latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3;
        if span.metadata().is_some_and(|m| *m.level() == Level::INFO) {
            span.set_attribute("http.response.status_code", i64::from(status));
            if status >= 500 {
                span.record("otel.status_code", "ERROR");
            }
            tracing::info!(status, latency_ms, "answered");
        } else {
            tracing::debug!(status, latency_ms, "answered");
        }
    }
}
