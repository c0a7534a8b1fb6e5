//! The hop's record of one request: its span, its access-log line and its
//! report to Istio's metrics, finished once with the outcome.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use axum::{
    body::Body,
    http::{Method, Request, Response},
};
use opentelemetry::{
    KeyValue,
    trace::{SpanKind, Status, TraceContextExt},
};

use super::super::{
    refusal::Refusal,
    stats::{Exchange, ServiceRef},
};

use super::Listener;

/// The hop's span, access-log line and metrics, finished once with the
/// outcome. Names are built only when the log or the span is on.
pub(super) struct Record<'a> {
    pub(super) l: &'a Listener,
    pub(super) start: Instant,
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) authority: String,
    pub(super) cx: opentelemetry::Context,
    pub(super) exporting: bool,
    pub(super) rule: String,
    pub(super) to: String,
    /// The Service and the workload (an index of `Stats::peers`) the request
    /// was sent to, once chosen.
    pub(super) service: Option<Arc<ServiceRef>>,
    pub(super) destination: Option<usize>,
    /// Whether the connection to that workload is mutual TLS.
    pub(super) mtls: bool,
    pub(super) request_bytes: u64,
    /// Set once finished; a record dropped before (its client hung up) is
    /// finished as Envoy logs it: code 0, flag `DC`.
    pub(super) finished: AtomicBool,
    /// The fault filter delayed the request (flag `DI`).
    pub(super) delayed: AtomicBool,
}

impl Drop for Record<'_> {
    fn drop(&mut self) {
        if self.finished.load(Ordering::Relaxed) {
            return;
        }
        let flags = if self.delayed.load(Ordering::Relaxed) {
            "DI,DC"
        } else {
            "DC"
        };
        self.finish(0, flags);
        let stats = &self.l.plane.stats;
        if stats.enabled() {
            stats.record(&self.exchange(0, flags, false));
        }
    }
}

impl Record<'_> {
    pub(super) fn verbose(&self) -> bool {
        self.exporting || self.l.plane.settings.access_log
    }

    pub(super) fn finish(&self, status: u16, flags: &str) {
        self.finished.store(true, Ordering::Relaxed);
        if self.exporting {
            let span = self.cx.span();
            span.set_attribute(KeyValue::new("http.status_code", i64::from(status)));
            span.set_attribute(KeyValue::new("response_flags", flags.to_owned()));
            // The rule that picked the destination, as Envoy tags the route.
            if !self.rule.is_empty() {
                span.set_attribute(KeyValue::new("route_name", self.rule.clone()));
            }
            if status >= 500 {
                span.set_status(Status::error(format!("{status} {flags}")));
            }
            span.end();
        }
        if self.l.plane.settings.access_log {
            let from = self.l.hop.name();
            let (rule, to) = (or_dash(&self.rule), or_dash(&self.to));
            tracing::info!(
                target: "weather::access",
                "\"{} {}\" {status} {flags} from={from} to={to} rule={rule} {:.1}ms",
                self.method,
                self.path,
                self.start.elapsed().as_secs_f64() * 1e3
            );
        }
    }

    /// What the metrics get of this exchange; the duration and response size
    /// are filled in when the response ends.
    pub(super) fn exchange(&self, code: u16, flags: &'static str, reached: bool) -> Exchange {
        let service = self
            .service
            .clone()
            .unwrap_or_else(|| Arc::new(ServiceRef::unresolved(&self.authority)));
        Exchange {
            source: self.l.peer,
            destination: self.destination,
            service,
            code,
            flags,
            reached,
            destination_only: false,
            mtls: self.mtls,
            duration: self.start.elapsed(),
            request_bytes: self.request_bytes,
            response_bytes: 0,
        }
    }

    /// An attempt the destination answered with `code` and the hop retried:
    /// the destination's proxy reports it, the caller's only the last one.
    pub(super) fn retried(&self, code: u16) {
        let stats = &self.l.plane.stats;
        if stats.enabled() {
            let mut e = self.exchange(code, "-", true);
            e.destination_only = true;
            stats.record(&e);
        }
    }

    /// The hop answers itself: the destination never saw the request.
    pub(super) fn refuse(&self, r: Refusal) -> Response<Body> {
        let code = r.status.as_u16();
        self.finish(code, r.flag);
        let stats = &self.l.plane.stats;
        if stats.enabled() {
            let mut e = self.exchange(code, r.flag, false);
            e.response_bytes = r.detail.len() as u64 + 1;
            stats.record(&e);
        }
        r.into_response()
    }
}

pub(super) fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// The proxy's span, like an Envoy's: a child of the caller's context, the
/// parent of the upstream's server span.
pub(super) fn proxy_span(
    l: &Listener,
    req: &Request<Body>,
    authority: &str,
    path: &str,
    parent: &opentelemetry::Context,
) -> opentelemetry::global::BoxedSpan {
    let attributes = vec![
        KeyValue::new("component", "proxy"),
        KeyValue::new("http.method", req.method().to_string()),
        KeyValue::new("http.url", format!("http://{authority}{path}")),
        KeyValue::new("downstream_cluster", l.hop.name().to_owned()),
    ];
    l.telemetry.start(
        format!("{authority}/*"),
        SpanKind::Client,
        attributes,
        req.headers(),
        parent,
    )
}
