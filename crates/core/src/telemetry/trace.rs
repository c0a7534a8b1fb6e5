//! Each app's tracer, exporting over OTLP/HTTP (protobuf) with a batch
//! processor, or a no-op that records nothing when no endpoint is set or
//! `OTEL_SDK_DISABLED=true`.

use std::{fmt, sync::Mutex};

use axum::http::HeaderMap;
use clap::Args;
use opentelemetry::{KeyValue, global::BoxedTracer, trace::noop::NoopTracer};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};

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

#[cfg(test)]
mod tests {
    use super::*;

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
