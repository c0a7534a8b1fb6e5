//! Log lines: time, level, target, message and fields, then the trace and span
//! id of the request being served, as text or JSON (`LOG_FORMAT=json`).

use std::fmt::{self, Write as _};

use opentelemetry::trace::TraceContextExt;
use tracing::{Event, Subscriber, field::Field};
use tracing_subscriber::{
    EnvFilter,
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    prelude::*,
    registry::LookupSpan,
};

/// The trace and span id of the current OpenTelemetry context, when there is one.
pub fn current_ids() -> Option<(String, String)> {
    let cx = opentelemetry::Context::current();
    ids(cx.span().span_context())
}

/// A span context's trace and span id, as log lines write them, when it is valid.
pub fn ids(sc: &opentelemetry::trace::SpanContext) -> Option<(String, String)> {
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
    if tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init()
        .is_ok()
    {
        let _ = JSON.set(json);
    }
}

/// Whether the installed subscriber writes JSON lines.
static JSON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// A request's access-log line, as `tracing::info!(method, route, status,
/// latency_ms, trace_id, span_id, "request")` would write it under [`init`],
/// and under the same filter (`RUST_LOG`), but written straight to stderr:
/// through the subscriber it cost a small answer's whole budget (README,
/// "Benchmarks").
pub fn access(
    method: &str,
    route: &str,
    status: u16,
    latency_ms: f64,
    ids: Option<(String, String)>,
) {
    use std::{cell::RefCell, io::Write as _};
    if !tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO) {
        return;
    }
    thread_local! {
        static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    }
    let json = JSON.get().copied().unwrap_or(false);
    LINE.with_borrow_mut(|line| {
        line.clear();
        let request = Request {
            method,
            route,
            status,
            latency_ms,
        };
        if access_line(line, json, &request, ids).is_ok() {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    });
}

/// What an access-log line tells of a request.
struct Request<'a> {
    method: &'a str,
    route: &'a str,
    status: u16,
    latency_ms: f64,
}

fn access_line(
    line: &mut String,
    json: bool,
    r: &Request<'_>,
    ids: Option<(String, String)>,
) -> fmt::Result {
    let status = itoa::Buffer::new().format(r.status).to_owned();
    let latency = r.latency_ms.to_string();
    let pairs = [
        ("method", true, r.method),
        ("route", true, r.route),
        ("status", false, status.as_str()),
        ("latency_ms", false, latency.as_str()),
    ];
    let head = Head {
        level: tracing::Level::INFO,
        target: ACCESS_TARGET,
        message: "request",
    };
    write_line(line, json, &head, &pairs, ids)
}

/// Where access-log lines say they come from (`RUST_LOG` filters on it).
const ACCESS_TARGET: &str = "weather_core::server::layers";

/// One log line: time, level, target, message and fields, then the trace and
/// span id of the request being served, so that a line leads to its trace.
pub struct LineFormat {
    pub json: bool,
}

/// An event's fields, written once into one buffer as they are visited (no
/// allocation per field): the message apart, the others as `name` and a
/// range of `text`, with whether JSON must quote the value.
#[derive(Default)]
struct Fields {
    message: String,
    text: String,
    pairs: Vec<(&'static str, bool, std::ops::Range<usize>)>,
}

impl Fields {
    fn push(&mut self, field: &Field, quoted: bool, write: impl FnOnce(&mut String)) {
        let start = self.text.len();
        write(&mut self.text);
        self.pairs
            .push((field.name(), quoted, start..self.text.len()));
    }
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.message);
        } else {
            self.push(field, true, |t| t.push_str(value));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, false, |t| {
            t.push_str(itoa::Buffer::new().format(value))
        });
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, false, |t| {
            t.push_str(itoa::Buffer::new().format(value))
        });
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: those are written as strings.
        self.push(field, !value.is_finite(), |t| {
            let _ = write!(t, "{value}");
        });
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, false, |t| {
            t.push_str(if value { "true" } else { "false" })
        });
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.push(field, true, |t| {
                let _ = write!(t, "{value:?}");
            });
        }
    }
}

/// Writes `s` as a JSON string.
fn json_str(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    match serde_json::to_string(s) {
        Ok(q) => w.write_str(&q),
        Err(_) => Err(fmt::Error),
    }
}

/// UTC now as RFC 3339 with microseconds (`2026-11-25T07:55:00.123456Z`, as
/// tracing-subscriber writes it). The part up to the second is made once per
/// second and thread.
fn write_now(w: &mut impl fmt::Write) -> fmt::Result {
    use std::cell::RefCell;
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != secs {
            *cached = secs;
            text.clear();
            crate::calendar::push_iso_date(
                text,
                crate::calendar::civil_from_days((secs / 86_400) as i64),
            );
            let s = secs % 86_400;
            let _ = write!(text, "T{:02}:{:02}:{:02}.", s / 3600, s / 60 % 60, s % 60);
        }
        w.write_str(text)
    })?;
    let micros = now.subsec_micros();
    let mut digits = *b"000000Z";
    let formatted = itoa::Buffer::new().format(micros).as_bytes().to_owned();
    digits[6 - formatted.len()..6].copy_from_slice(&formatted);
    w.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
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
        let meta = event.metadata();
        let pairs: Vec<(&str, bool, &str)> = fields
            .pairs
            .iter()
            .map(|(k, quoted, range)| (*k, *quoted, &fields.text[range.clone()]))
            .collect();
        let head = Head {
            level: *meta.level(),
            target: meta.target(),
            message: &fields.message,
        };
        write_line(&mut w, self.json, &head, &pairs, current_ids())
    }
}

/// What a line says first.
struct Head<'a> {
    level: tracing::Level,
    target: &'a str,
    message: &'a str,
}

/// One line, text or JSON: time, level, target, message, the fields (name,
/// whether JSON quotes the value, the value), the trace and span id.
fn write_line(
    w: &mut impl fmt::Write,
    json: bool,
    head: &Head<'_>,
    pairs: &[(&str, bool, &str)],
    ids: Option<(String, String)>,
) -> fmt::Result {
    if json {
        w.write_str("{\"timestamp\":\"")?;
        write_now(w)?;
        write!(w, "\",\"level\":\"{}\",\"target\":", head.level.as_str())?;
        json_str(w, head.target)?;
        w.write_str(",\"message\":")?;
        json_str(w, head.message)?;
        for (k, quoted, v) in pairs {
            w.write_char(',')?;
            json_str(w, k)?;
            w.write_char(':')?;
            if *quoted {
                json_str(w, v)?;
            } else {
                w.write_str(v)?;
            }
        }
        if let Some((trace, span)) = ids {
            write!(w, ",\"trace_id\":\"{trace}\",\"span_id\":\"{span}\"")?;
        }
        w.write_str("}\n")
    } else {
        write_now(w)?;
        // `{:>5}` of the level, without the formatter.
        w.write_str(match head.level {
            tracing::Level::TRACE => " TRACE ",
            tracing::Level::DEBUG => " DEBUG ",
            tracing::Level::INFO => "  INFO ",
            tracing::Level::WARN => "  WARN ",
            tracing::Level::ERROR => " ERROR ",
        })?;
        w.write_str(head.target)?;
        w.write_str(": ")?;
        w.write_str(head.message)?;
        for (k, _, v) in pairs {
            w.write_char(' ')?;
            w.write_str(k)?;
            w.write_char('=')?;
            w.write_str(v)?;
        }
        if let Some((trace, span)) = ids {
            write!(w, " trace_id={trace} span_id={span}")?;
        }
        w.write_char('\n')
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

    /// The access line written by hand is the line the subscriber writes
    /// for the same event, in both formats.
    #[test]
    fn access_lines_are_what_the_subscriber_writes() {
        for json in [false, true] {
            let theirs = capture(json, || {
                let (method, route, status, latency_ms) = ("GET", "/forecast", 200u64, 1.25);
                let (trace_id, span_id) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
                tracing::info!(target: "weather_core::server::layers", %method, route, status, latency_ms, trace_id, span_id, "request");
            });
            let mut ours = String::new();
            let request = Request {
                method: "GET",
                route: "/forecast",
                status: 200,
                latency_ms: 1.25,
            };
            let ids = Some((
                "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                "00f067aa0ba902b7".into(),
            ));
            access_line(&mut ours, json, &request, ids).unwrap();
            // Past the timestamp, which is `2026-11-25T07:55:00.123456Z`'s length.
            let at = if json { 13 + 27 } else { 27 };
            assert_eq!(ours[at..], theirs[at..], "json: {json}");
        }
    }

    fn capture(json: bool, log: impl FnOnce()) -> String {
        let buf = Buffer::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || sink.clone())
                .with_ansi(false)
                .event_format(LineFormat { json }),
        );
        tracing::subscriber::with_default(subscriber, log);
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    fn log_line(json: bool) -> String {
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
        capture(json, || {
            tracing::warn!(
                reason = "timed out",
                status = 503u64,
                "recommendation unavailable"
            )
        })
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
    fn the_time_is_written_as_tracing_subscriber_writes_it() {
        use tracing_subscriber::fmt::time::FormatTime;
        let (mut ours, mut theirs) = (String::new(), String::new());
        write_now(&mut Writer::new(&mut ours)).unwrap();
        tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut Writer::new(&mut theirs))
            .unwrap();
        assert_eq!(ours.len(), "2026-11-25T07:55:00.123456Z".len(), "{ours}");
        assert_eq!(ours.len(), theirs.len(), "{ours} / {theirs}");
        // The same up to the minute (both were read within one).
        let minute = "2026-11-25T07:55".len();
        if ours[..minute] != theirs[..minute] {
            assert!(
                ours[17..19] == *"59" || theirs[17..19] == *"00",
                "{ours} / {theirs}"
            );
        }
        assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.', "{ours}");
    }

    #[test]
    fn text_lines_carry_the_trace_and_span_id() {
        let line = log_line(false);
        assert!(line.contains(" WARN weather_core::telemetry::log::tests: recommendation unavailable reason=timed out status=503 trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7"), "{line}");
    }
}
