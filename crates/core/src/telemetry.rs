//! Telemetry: logs, and OpenTelemetry traces exported over OTLP/HTTP (protobuf).
//!
//! Each app gets its own tracer provider, so that several apps in one process
//! (`weather up`) still report as separate services. With no OTLP endpoint set, or
//! `OTEL_SDK_DISABLED=true`, nothing is exported and the tracer is a no-op that
//! passes the caller's trace context through unchanged, so the sidecars' spans
//! still join up. Logs are readable text by default, JSON lines with
//! `LOG_FORMAT=json`; each line inside a request carries its trace and span id.

use std::{
    fmt,
    sync::{Mutex, OnceLock},
};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use clap::Args;
use opentelemetry::{
    KeyValue,
    global::BoxedTracer,
    propagation::{Extractor, Injector, TextMapCompositePropagator},
    trace::{TraceContextExt, noop::NoopTracer},
};
use opentelemetry_sdk::{
    Resource,
    propagation::{BaggagePropagator, TraceContextPropagator},
    trace::SdkTracerProvider,
};
use tracing::{Event, Subscriber, field::Field};
use tracing_subscriber::{
    EnvFilter,
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer, time::FormatTime},
    prelude::*,
    registry::LookupSpan,
};

/// Where traces go. The standard `OTEL_*` variables; the SDK itself also reads
/// `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*` and
/// `OTEL_EXPORTER_OTLP_HEADERS`.
#[derive(Args, Clone, Debug, Default)]
pub struct TelemetryArgs {
    /// Base URL of an OTLP/HTTP receiver (traces go to its /v1/traces), e.g.
    /// http://jaeger-collector.istio-system:4318. Unset: nothing is exported.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// Full URL for traces, overriding --otlp-endpoint.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    pub otlp_traces_endpoint: Option<String>,

    /// Turn telemetry export off whatever the endpoint.
    #[arg(long, env = "OTEL_SDK_DISABLED", default_value_t = false)]
    pub otel_sdk_disabled: bool,
}

impl TelemetryArgs {
    /// Sends traces to the OTLP/HTTP receiver at `base`.
    pub fn to(base: impl Into<String>) -> Self {
        TelemetryArgs {
            otlp_endpoint: Some(base.into()),
            ..TelemetryArgs::default()
        }
    }

    /// The URL traces are posted to, if any.
    pub fn traces_endpoint(&self) -> Option<String> {
        if self.otel_sdk_disabled {
            return None;
        }
        let nonempty = |s: &Option<String>| {
            s.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        nonempty(&self.otlp_traces_endpoint).or_else(|| {
            nonempty(&self.otlp_endpoint).map(|b| format!("{}/v1/traces", b.trim_end_matches('/')))
        })
    }
}

/// An app's tracer. Cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    tracer: std::sync::Arc<BoxedTracer>,
    exporting: bool,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("exporting", &self.exporting)
            .finish()
    }
}

/// Every provider made, so that [`flush_all`] and [`shutdown_all`] reach them.
static PROVIDERS: Mutex<Vec<SdkTracerProvider>> = Mutex::new(Vec::new());

impl Telemetry {
    /// A tracer that records nothing and passes trace context through.
    pub fn disabled() -> Self {
        Telemetry {
            tracer: std::sync::Arc::new(BoxedTracer::new(Box::new(NoopTracer::new()))),
            exporting: false,
        }
    }

    /// A tracer reporting as `service` (`service.name`) of `version`, exporting
    /// to the configured endpoint; `extra` resource attributes are added.
    pub fn new(
        service: &str,
        version: &str,
        args: &TelemetryArgs,
        extra: &[(&'static str, String)],
    ) -> Self {
        let Some(endpoint) = args.traces_endpoint() else {
            return Telemetry::disabled();
        };
        if std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").is_ok_and(|p| p != "http/protobuf") {
            tracing::warn!(
                "OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf is supported; using it"
            );
        }
        // The exporter's blocking HTTP client must be built outside the async
        // runtime; its batch processor then sends from its own thread.
        let url = endpoint.clone();
        let built = std::thread::spawn(move || {
            use opentelemetry_otlp::{Protocol, WithExportConfig};
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(url)
                .build()
        })
        .join();
        let exporter = match built {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => {
                tracing::error!("cannot export traces to {endpoint}: {e}; tracing is off");
                return Telemetry::disabled();
            }
            Err(_) => return Telemetry::disabled(),
        };
        let pod_ns = std::env::var("POD_NAMESPACE").ok();
        let mut attrs = vec![
            KeyValue::new("service.version", version.to_owned()),
            KeyValue::new(
                "service.namespace",
                pod_ns.clone().unwrap_or_else(|| "weather".into()),
            ),
        ];
        if let Ok(pod) = std::env::var("POD_NAME") {
            attrs.push(KeyValue::new("k8s.pod.name", pod));
        }
        if let Some(ns) = pod_ns {
            attrs.push(KeyValue::new("k8s.namespace.name", ns));
        }
        for (k, v) in extra {
            attrs.push(KeyValue::new(*k, v.clone()));
        }
        let resource = Resource::builder()
            .with_service_name(service.to_owned())
            .with_attributes(attrs)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "weather");
        PROVIDERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(provider);
        Telemetry {
            tracer: std::sync::Arc::new(BoxedTracer::new(Box::new(tracer))),
            exporting: true,
        }
    }

    pub fn tracer(&self) -> &BoxedTracer {
        &self.tracer
    }

    /// Starts a span under `parent`; the request's `x-request-id`, when it has
    /// one, is added as Envoy tags it (`guid:x-request-id`).
    pub fn start(
        &self,
        name: String,
        kind: opentelemetry::trace::SpanKind,
        mut attributes: Vec<KeyValue>,
        headers: &HeaderMap,
        parent: &opentelemetry::Context,
    ) -> opentelemetry::global::BoxedSpan {
        use opentelemetry::trace::Tracer;
        if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
            attributes.push(KeyValue::new("guid:x-request-id", id.to_owned()));
        }
        let tracer = self.tracer();
        tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(tracer, parent)
    }

    pub fn is_exporting(&self) -> bool {
        self.exporting
    }
}

/// Sends every finished span now (blocking: call from a blocking thread).
pub fn flush_all() {
    let providers = PROVIDERS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for p in providers {
        let _ = p.force_flush();
    }
}

/// Flushes and stops every exporter (blocking), at the end of `main`.
pub fn shutdown_all() {
    let providers = std::mem::take(&mut *PROVIDERS.lock().unwrap_or_else(|e| e.into_inner()));
    for p in providers {
        let _ = p.shutdown();
    }
}

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

/// The trace and span id of the current OpenTelemetry context, when there is one.
pub fn current_ids() -> Option<(String, String)> {
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// Installs the global log subscriber once; later calls (tests, `weather up`)
/// are no-ops. `RUST_LOG` filters (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let ansi = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .event_format(LineFormat { json });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
}

/// One log line: time, level, target, message and fields, then the trace and
/// span id of the request being served, so that a line leads to its trace.
pub struct LineFormat {
    pub json: bool,
}

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(String, serde_json::Value)>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.pairs.push((field.name().to_owned(), value.into()));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pairs.push((field.name().to_owned(), value.into()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pairs.push((field.name().to_owned(), value.into()));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.pairs.push((field.name().to_owned(), value.into()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pairs.push((field.name().to_owned(), value.into()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.pairs
                .push((field.name().to_owned(), format!("{value:?}").into()));
        }
    }
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut time = String::new();
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut time))?;
        let meta = event.metadata();
        let ids = current_ids();
        if self.json {
            let mut obj = serde_json::Map::new();
            obj.insert("timestamp".into(), time.into());
            obj.insert("level".into(), meta.level().as_str().into());
            obj.insert("target".into(), meta.target().into());
            obj.insert("message".into(), fields.message.into());
            for (k, v) in fields.pairs {
                obj.insert(k, v);
            }
            if let Some((trace, span)) = ids {
                obj.insert("trace_id".into(), trace.into());
                obj.insert("span_id".into(), span.into());
            }
            writeln!(w, "{}", serde_json::Value::Object(obj))
        } else {
            write!(
                w,
                "{time} {:>5} {}: {}",
                meta.level(),
                meta.target(),
                fields.message
            )?;
            for (k, v) in fields.pairs {
                match v {
                    serde_json::Value::String(s) => write!(w, " {k}={s}")?,
                    other => write!(w, " {k}={other}")?,
                }
            }
            if let Some((trace, span)) = ids {
                write!(w, " trace_id={trace} span_id={span}")?;
            }
            writeln!(w)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log_line(json: bool) -> String {
        let buf = Buffer::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || sink.clone())
                .with_ansi(false)
                .event_format(LineFormat { json }),
        );
        let sc = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let _cx = opentelemetry::Context::new()
            .with_remote_span_context(sc)
            .attach();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                reason = "timed out",
                status = 503u64,
                "recommendation unavailable"
            )
        });
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_lines_carry_the_trace_and_span_id() {
        let line = log_line(true);
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["message"], "recommendation unavailable");
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["reason"], "timed out");
        assert_eq!(v["status"], 503);
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["span_id"], "00f067aa0ba902b7");
    }

    #[test]
    fn text_lines_carry_the_trace_and_span_id() {
        let line = log_line(false);
        assert!(line.contains(" WARN weather_core::telemetry::tests: recommendation unavailable reason=timed out status=503 trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7"), "{line}");
    }

    #[test]
    fn no_endpoint_means_no_export_and_the_context_passes_through() {
        assert_eq!(TelemetryArgs::default().traces_endpoint(), None);
        assert_eq!(
            TelemetryArgs::to("http://collector:4318/")
                .traces_endpoint()
                .as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        let explicit = TelemetryArgs {
            otlp_traces_endpoint: Some("http://c:4318/x".into()),
            ..TelemetryArgs::to("http://ignored")
        };
        assert_eq!(
            explicit.traces_endpoint().as_deref(),
            Some("http://c:4318/x")
        );
        let off = TelemetryArgs {
            otel_sdk_disabled: true,
            ..TelemetryArgs::to("http://collector:4318")
        };
        assert_eq!(off.traces_endpoint(), None);
        assert!(!Telemetry::new("x", "v1", &TelemetryArgs::default(), &[]).is_exporting());
    }
}
