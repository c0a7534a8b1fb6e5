//! The process's one `tracing` subscriber: `tracing-subscriber`'s formatter
//! writes the logs (text by default, JSON with `LOG_FORMAT=json`) under
//! `RUST_LOG`, and `tracing-opentelemetry` turns the spans into OpenTelemetry
//! spans once an app exports ([`super::trace`]); until then its filter says no
//! to every callsite, so a span no log line asks for is not even built. A
//! request's lines are written inside its span, whose `trace_id` and
//! `span_id` fields lead to its trace.
//!
//! (Two ways that looked simpler do not work: a dynamic per-layer filter
//! leaves every span enabled even when it says no, and a reloadable layer
//! hides the OpenTelemetry layer from `OpenTelemetrySpanExt`, so spans lose
//! their parent and attributes.)

use std::sync::{OnceLock, atomic::Ordering};

use opentelemetry::trace::TraceContextExt;
use tracing::Subscriber;
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::{LevelFilter, filter_fn},
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
};

/// The trace and span id of a span context, as log lines write them, when it
/// is valid.
pub fn ids(sc: &opentelemetry::trace::SpanContext) -> Option<(String, String)> {
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// The trace and span id of an OpenTelemetry context, when it has a span.
pub fn context_ids(cx: &opentelemetry::Context) -> Option<(String, String)> {
    ids(cx.span().span_context())
}

/// Installs the subscriber for a binary: logs at `RUST_LOG` (default `info`)
/// on stderr. Later calls, and calls after [`install_default`], are no-ops.
pub fn init() {
    install(Some("info"));
}

/// Installs the subscriber if none is yet, writing logs only if `RUST_LOG`
/// asks for them: for a process that sets up no logging of its own (a test,
/// an embedder) but whose `tracing` spans are to be exported, which they are
/// only through this subscriber.
pub fn init_quiet() {
    install(None);
}

fn install(default: Option<&str>) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let filter = match (std::env::var("RUST_LOG"), default) {
            (Ok(v), _) => EnvFilter::new(v),
            (Err(_), Some(d)) => EnvFilter::new(d),
            (Err(_), None) => EnvFilter::default().add_directive(LevelFilter::OFF.into()),
        };
        let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
        let _ = tracing_subscriber::registry()
            .with(logs(json).with_filter(filter))
            .with(spans())
            .try_init();
    });
}

/// The log lines: text, or JSON with the event's fields at the top level and
/// the request span's fields (its trace and span id) under `span`.
fn logs<S>(json: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if json {
        fmt.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        fmt.with_ansi(ansi).boxed()
    }
}

/// The OpenTelemetry layer, for spans, and for warnings and errors as the
/// events of the span they happen in; nothing until an app exports.
fn spans<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(super::trace::sdk_tracer())
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(filter_fn(|meta| {
            super::trace::EXPORTING.load(Ordering::Acquire)
                && (meta.is_span() || *meta.level() <= tracing::Level::WARN)
        }))
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::super::{Telemetry, TelemetryArgs};

    /// Before any app exports, a span nothing logs is not built; once one
    /// does, spans are built and carry an OpenTelemetry context (which
    /// `OpenTelemetrySpanExt` must reach through the subscriber).
    #[test]
    fn spans_are_built_once_an_app_exports_and_not_before() {
        super::init_quiet();
        assert!(tracing::info_span!("request").is_disabled());
        let t = Telemetry::new("x", "v1", &TelemetryArgs::to("http://127.0.0.1:1"), &[]);
        assert!(t.is_exporting());
        let span = tracing::info_span!("request");
        assert!(!span.is_disabled());
        assert!(span.context().span().span_context().is_valid());
    }
}
