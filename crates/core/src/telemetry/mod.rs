//! Telemetry: OpenTelemetry traces exported over OTLP/HTTP (protobuf) or to
//! Zipkin ([`zipkin`]), the
//! propagation of trace context, and logs that lead to their trace.
//!
//! - [`trace`]: where each app's spans go, so that several apps in one process
//!   (`weather up`) still report as separate services; without an endpoint
//!   nothing is exported and the caller's context passes through unchanged;
//! - [`propagation`]: W3C trace context, baggage and B3 in and out;
//! - [`log`]: the `tracing` subscriber: `tracing-subscriber`'s text or JSON
//!   lines (`LOG_FORMAT=json`) and `tracing-opentelemetry`'s spans.

pub mod log;
pub mod propagation;
pub mod trace;
mod zipkin;

pub use log::{context_ids, ids, init, init_quiet};
pub use propagation::{HeaderExtractor, HeaderInjector, propagator};
pub use trace::{Exporter, Telemetry, TelemetryArgs, flush_all, shutdown_all};
