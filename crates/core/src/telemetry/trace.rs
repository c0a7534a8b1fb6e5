//! Where spans go. One tracer provider per process feeds both the `tracing`
//! spans of the services (through `tracing-opentelemetry`) and the spans the
//! local data plane starts itself; each span carries the [`Telemetry`] it
//! belongs to, and a processor hands it to that app's own batch exporter,
//! whose resource names the app (`service.name`, `service.version`). A
//! service binary has one such app; `weather up` has one per workload and
//! per proxy hop, all in one process, each still reporting as itself.
//!
//! Without an endpoint (or with `OTEL_SDK_DISABLED=true`) an app exports
//! nothing and builds no spans: the caller's trace context passes through it
//! unchanged, so the sidecars' spans still join up.

use std::{
    fmt,
    sync::{
        Arc, OnceLock, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::http::HeaderMap;
use clap::Args;
use opentelemetry::{
    Context, KeyValue, Value,
    global::BoxedTracer,
    trace::{SpanKind, Tracer, TracerProvider as _},
};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    trace::{BatchSpanProcessor, SdkTracer, SdkTracerProvider, Span, SpanData, SpanProcessor},
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

    /// Where spans go: otlp (the default, when an OTLP endpoint is set),
    /// zipkin, or none.
    #[arg(long, env = "OTEL_TRACES_EXPORTER")]
    pub traces_exporter: Option<String>,

    /// Zipkin's collector URL, for --traces-exporter zipkin.
    #[arg(long, env = "OTEL_EXPORTER_ZIPKIN_ENDPOINT")]
    pub zipkin_endpoint: Option<String>,
}

/// Where an app's spans go, as [`TelemetryArgs::exporter`] reads the settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exporter {
    /// OTLP/HTTP (protobuf), to this URL.
    Otlp(String),
    /// Zipkin's JSON v2, to this collector URL.
    Zipkin(String),
}

/// OpenTelemetry's default Zipkin collector URL.
pub const ZIPKIN_DEFAULT_ENDPOINT: &str = "http://localhost:9411/api/v2/spans";

impl TelemetryArgs {
    /// Sends traces to the OTLP/HTTP receiver at `base`.
    pub fn to(base: impl Into<String>) -> Self {
        TelemetryArgs {
            otlp_endpoint: Some(base.into()),
            ..TelemetryArgs::default()
        }
    }

    /// Sends traces to the Zipkin collector at `url` (its `/api/v2/spans`).
    pub fn to_zipkin(url: impl Into<String>) -> Self {
        TelemetryArgs {
            traces_exporter: Some("zipkin".into()),
            zipkin_endpoint: Some(url.into()),
            ..TelemetryArgs::default()
        }
    }

    /// Where spans go, as OpenTelemetry's specification reads
    /// `OTEL_TRACES_EXPORTER`: `otlp` (the default) to the OTLP endpoint,
    /// `zipkin` to `OTEL_EXPORTER_ZIPKIN_ENDPOINT` (else Zipkin's default
    /// URL), `none` nowhere. One difference, kept from before: OTLP without
    /// an endpoint exports nothing rather than trying `localhost:4318`, so a
    /// service started bare sends nowhere. An exporter this build does not
    /// have is an error that names those it has.
    pub fn exporter(&self) -> Result<Option<Exporter>, String> {
        if self.otel_sdk_disabled {
            return Ok(None);
        }
        let chosen = self
            .traces_exporter
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or("otlp");
        match chosen.to_ascii_lowercase().as_str() {
            "otlp" => Ok(self.traces_endpoint().map(Exporter::Otlp)),
            "zipkin" => Ok(Some(Exporter::Zipkin(
                self.zipkin_endpoint
                    .as_deref()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .unwrap_or(ZIPKIN_DEFAULT_ENDPOINT)
                    .to_owned(),
            ))),
            "none" => Ok(None),
            other => Err(format!(
                "OTEL_TRACES_EXPORTER={other:?}: this build exports with otlp, zipkin or none"
            )),
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

/// The attribute a span carries to name its sink; the dispatcher takes it off
/// before the span is exported.
pub(crate) const SINK: &str = "weather.sink";

/// An app's telemetry: which sink its spans go to, when it exports. Cheap to
/// clone.
#[derive(Clone)]
pub struct Telemetry {
    sink: Option<i64>,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("exporting", &self.is_exporting())
            .finish()
    }
}

/// Whether any app exports: until one does, the subscriber's OpenTelemetry
/// layer takes no span at all.
pub(crate) static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Every app's batch processor, by sink id.
static SINKS: RwLock<Vec<Arc<BatchSpanProcessor>>> = RwLock::new(Vec::new());

impl Telemetry {
    /// Exports nothing and passes trace context through.
    pub fn disabled() -> Self {
        Telemetry { sink: None }
    }

    /// Telemetry reporting as `service` (`service.name`) of `version`,
    /// exporting to the configured endpoint; `extra` resource attributes are
    /// added.
    pub fn new(
        service: &str,
        version: &str,
        args: &TelemetryArgs,
        extra: &[(&'static str, String)],
    ) -> Self {
        let exporter = match args.exporter() {
            Ok(Some(e)) => e,
            Ok(None) => return Telemetry::disabled(),
            Err(e) => {
                tracing::error!("{e}; tracing is off");
                return Telemetry::disabled();
            }
        };
        let resource = resource(service, version, extra);
        // The exporters' blocking HTTP clients must be built outside the
        // async runtime; their batch processors then send from their own
        // threads.
        let to = exporter.clone();
        let tags: Vec<(String, String)> = resource
            .iter()
            .filter(|(k, _)| k.as_str() != "service.name")
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let name = service.to_owned();
        let built = std::thread::spawn(move || -> Result<BatchSpanProcessor, String> {
            Ok(match to {
                Exporter::Otlp(url) => {
                    use opentelemetry_otlp::{Protocol, WithExportConfig};
                    if std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL")
                        .is_ok_and(|p| p != "http/protobuf")
                    {
                        tracing::warn!(
                            "OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf is supported; using it"
                        );
                    }
                    let e = opentelemetry_otlp::SpanExporter::builder()
                        .with_http()
                        .with_protocol(Protocol::HttpBinary)
                        .with_endpoint(url)
                        .build()
                        .map_err(|e| e.to_string())?;
                    BatchSpanProcessor::builder(e).build()
                }
                Exporter::Zipkin(url) => {
                    BatchSpanProcessor::builder(super::zipkin::exporter(url, &name, tags)?).build()
                }
            })
        })
        .join();
        let mut processor = match built {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::error!("cannot export traces ({exporter:?}): {e}; tracing is off");
                return Telemetry::disabled();
            }
            Err(_) => return Telemetry::disabled(),
        };
        processor.set_resource(&resource);
        let sink = {
            let mut sinks = SINKS.write().unwrap_or_else(|e| e.into_inner());
            sinks.push(Arc::new(processor));
            sinks.len() as i64 - 1
        };
        if !EXPORTING.swap(true, Ordering::AcqRel) {
            // The subscriber's OpenTelemetry layer said no to every callsite
            // until now ([`super::log`]): ask it again.
            tracing::callsite::rebuild_interest_cache();
        }
        Telemetry { sink: Some(sink) }
    }

    /// The attribute that sends a span to this app's exporter.
    pub(crate) fn sink(&self) -> Option<KeyValue> {
        self.sink.map(|id| KeyValue::new(SINK, id))
    }

    pub fn is_exporting(&self) -> bool {
        self.sink.is_some()
    }

    /// The process's tracer (spans started with it go nowhere without a sink
    /// attribute: use [`Telemetry::start`]).
    pub fn tracer(&self) -> &BoxedTracer {
        static TRACER: OnceLock<BoxedTracer> = OnceLock::new();
        TRACER.get_or_init(|| BoxedTracer::new(Box::new(sdk_tracer())))
    }

    /// Starts a span of this app under `parent`; the request's
    /// `x-request-id`, when it has one, is added as Envoy tags it
    /// (`guid:x-request-id`).
    pub fn start(
        &self,
        name: String,
        kind: SpanKind,
        mut attributes: Vec<KeyValue>,
        headers: &HeaderMap,
        parent: &Context,
    ) -> opentelemetry::global::BoxedSpan {
        if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
            attributes.push(KeyValue::new("guid:x-request-id", id.to_owned()));
        }
        attributes.extend(self.sink());
        let tracer = self.tracer();
        tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(tracer, parent)
    }
}

/// An app's resource: its name and version, the pod's namespace and name
/// when Kubernetes gives them, and `extra`.
fn resource(service: &str, version: &str, extra: &[(&'static str, String)]) -> Resource {
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
    Resource::builder()
        .with_service_name(service.to_owned())
        .with_attributes(attrs)
        .build()
}

/// The process's one provider: every span ends in [`Dispatch`].
fn provider() -> &'static SdkTracerProvider {
    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        SdkTracerProvider::builder()
            .with_span_processor(Dispatch)
            .build()
    })
}

/// The tracer the `tracing` layer and [`Telemetry::start`] build spans with.
pub(crate) fn sdk_tracer() -> SdkTracer {
    provider().tracer("weather")
}

/// Hands each finished span to the batch processor its sink attribute names.
#[derive(Debug)]
struct Dispatch;

impl SpanProcessor for Dispatch {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, mut span: SpanData) {
        let Some(at) = span
            .attributes
            .iter()
            .position(|kv| kv.key.as_str() == SINK)
        else {
            return;
        };
        let Value::I64(id) = span.attributes.remove(at).value else {
            return;
        };
        let sink = SINKS
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id as usize)
            .cloned();
        if let Some(sink) = sink {
            sink.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

fn sinks() -> Vec<Arc<BatchSpanProcessor>> {
    SINKS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Sends every finished span now (blocking: call from a blocking thread).
pub fn flush_all() {
    for s in sinks() {
        let _ = s.force_flush();
    }
}

/// Flushes and stops every exporter (blocking), at the end of `main`.
pub fn shutdown_all() {
    for s in sinks() {
        let _ = s.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_endpoint_means_no_export() {
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

#[cfg(test)]
mod exporter_tests {
    use super::*;

    #[test]
    fn the_exporter_is_chosen_as_opentelemetrys_variables_say() {
        let none = TelemetryArgs::default();
        assert_eq!(
            none.exporter(),
            Ok(None),
            "OTLP without an endpoint sends nowhere"
        );
        assert_eq!(
            TelemetryArgs::to("http://c:4318").exporter(),
            Ok(Some(Exporter::Otlp("http://c:4318/v1/traces".into())))
        );
        let zipkin = TelemetryArgs {
            traces_exporter: Some("zipkin".into()),
            ..TelemetryArgs::default()
        };
        assert_eq!(
            zipkin.exporter(),
            Ok(Some(Exporter::Zipkin(ZIPKIN_DEFAULT_ENDPOINT.into())))
        );
        assert_eq!(
            TelemetryArgs::to_zipkin("http://z:9411/api/v2/spans").exporter(),
            Ok(Some(Exporter::Zipkin("http://z:9411/api/v2/spans".into())))
        );
        let off = TelemetryArgs {
            traces_exporter: Some("none".into()),
            ..TelemetryArgs::to("http://c:4318")
        };
        assert_eq!(off.exporter(), Ok(None));
        let disabled = TelemetryArgs {
            otel_sdk_disabled: true,
            ..TelemetryArgs::to_zipkin("http://z:9411/api/v2/spans")
        };
        assert_eq!(disabled.exporter(), Ok(None));
        let unknown = TelemetryArgs {
            traces_exporter: Some("jaeger".into()),
            ..TelemetryArgs::default()
        };
        let e = unknown.exporter().unwrap_err();
        assert!(
            e.contains("\"jaeger\"") && e.contains("otlp, zipkin or none"),
            "{e}"
        );
    }
}
