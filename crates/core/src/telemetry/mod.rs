//! Telemetry: OpenTelemetry traces exported over OTLP/HTTP (protobuf), the
//! propagation of trace context, and logs that lead to their trace.
//!
//! - [`trace`]: each app's tracer provider, so that several apps in one process
//!   (`weather up`) still report as separate services; without an endpoint
//!   nothing is exported and the caller's context passes through unchanged;
//! - [`propagation`]: W3C trace context, baggage and B3 in and out;
//! - [`log`]: readable text lines by default, JSON with `LOG_FORMAT=json`, each
//!   carrying the trace and span id of the request being served.

pub mod log;
pub mod propagation;
pub mod trace;

pub use log::{LineFormat, current_ids, init};
pub use propagation::{HeaderExtractor, HeaderInjector, propagator};
pub use trace::{Telemetry, TelemetryArgs, flush_all, shutdown_all};
