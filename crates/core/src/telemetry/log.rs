//! Log lines: time, level, target, message and fields, then the trace and span
//! id of the request being served, as text or JSON (`LOG_FORMAT=json`).

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use tracing::{Event, Subscriber, field::Field};
use tracing_subscriber::{
    EnvFilter,
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer, time::FormatTime},
    prelude::*,
    registry::LookupSpan,
};

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
        assert!(line.contains(" WARN weather_core::telemetry::log::tests: recommendation unavailable reason=timed out status=503 trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7"), "{line}");
    }
}
