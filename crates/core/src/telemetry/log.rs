//! The process's one `tracing` subscriber: `tracing-subscriber`'s formatter
//! writes the logs (text by default, JSON with `LOG_FORMAT=json`) under
//! `RUST_LOG`, and `tracing-opentelemetry` turns the spans into OpenTelemetry
//! spans once an app exports ([`super::trace`]); until then it is not in the
//! subscriber at all, so a span no log line asks for is not even built. A
//! request's lines are written inside its span, whose `trace_id` and
//! `span_id` fields lead to its trace.

use std::sync::OnceLock;

use opentelemetry::trace::TraceContextExt;
use tracing::Subscriber;
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    filter::{Filtered, LevelFilter},
    layer::{Layered, SubscriberExt},
    registry::LookupSpan,
    reload,
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

/// Installs the subscriber if none is yet, for spans to be exported from a
/// process that set up no logging itself (a test, an embedder): logs only if
/// `RUST_LOG` asks for them.
pub(crate) fn install_default() {
    install(None);
}

/// The subscriber below the OpenTelemetry layer.
type Logged =
    Layered<Filtered<Box<dyn Layer<Registry> + Send + Sync>, EnvFilter, Registry>, Registry>;
/// The OpenTelemetry layer, once an app exports.
type Spans = Option<Box<dyn Layer<Logged> + Send + Sync>>;

/// Where the OpenTelemetry layer goes in when the first app exports.
static SPANS: OnceLock<reload::Handle<Spans, Logged>> = OnceLock::new();

fn install(default: Option<&str>) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let filter = match (std::env::var("RUST_LOG"), default) {
            (Ok(v), _) => EnvFilter::new(v),
            (Err(_), Some(d)) => EnvFilter::new(d),
            (Err(_), None) => EnvFilter::default().add_directive(LevelFilter::OFF.into()),
        };
        let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
        let (spans, handle) = reload::Layer::new(None);
        if tracing_subscriber::registry()
            .with(logs(json).with_filter(filter))
            .with(spans)
            .try_init()
            .is_ok()
        {
            let _ = SPANS.set(handle);
        }
    });
}

/// Turns `tracing` spans into OpenTelemetry ones from now on (installing the
/// subscriber first if the process has none).
pub(crate) fn export_spans() {
    install_default();
    if let Some(handle) = SPANS.get() {
        let _ = handle.modify(|layer| {
            if layer.is_none() {
                *layer = Some(spans().boxed());
            }
        });
    }
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

/// The OpenTelemetry layer. Events inside a span (the access-log line, a
/// warning) become that span's events.
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
}
