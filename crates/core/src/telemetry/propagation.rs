//! Trace context in and out of HTTP headers: W3C trace context, baggage and B3,
//! so Envoy's B3 tracers and W3C ones both join the trace.

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapCompositePropagator};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

/// W3C trace context, baggage and B3 (single and multi header). On the way in,
/// W3C wins when both are present (it is extracted last); on the way out all are
/// written, so Envoy's B3 tracers and W3C ones both join the trace.
pub fn propagator() -> &'static TextMapCompositePropagator {
    static P: OnceLock<TextMapCompositePropagator> = OnceLock::new();
    P.get_or_init(|| {
        TextMapCompositePropagator::new(vec![
            Box::new(opentelemetry_propagator_b3::Propagator::with_encoding(
                opentelemetry_propagator_b3::B3Encoding::SingleAndMultiHeader,
            )),
            Box::new(BaggagePropagator::new()),
            Box::new(TraceContextPropagator::new()),
        ])
    })
}

/// Reads propagation headers from a request.
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes propagation headers into a request.
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
            self.0.insert(k, v);
        }
    }
}
